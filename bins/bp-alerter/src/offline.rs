//! The offline subcommands: `check-config`, `replay`, `test-rules`.

use std::io::{self, BufRead, BufWriter, Write};
use std::path::Path;

use metrics_model::config::ProcessMatch;
use metrics_model::{Duration, StandardField, Tick};
use rules_engine::RuleSet;
use rules_engine::config::{RulesFile, rules_file_from_json_text};
use rules_engine::replay::{ReplayOptions, replay as run_replay, replay_notified};
use rules_engine::rule_tests::TestFile;
use rules_engine::silence::silences_from_json;
use rules_engine::{Engine, EngineOptions, Muting};

use crate::EXIT_BAD_INPUT;

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
}

/// A warning per rule on `process.*[name]` whose name no entry of this
/// file's `monitoring.processes` has (the collector that reads this file
/// gives no such key; in cluster mode each node's collector reads its own).
fn unwatched_processes(config: &rules_engine::config::Config) -> Vec<String> {
    let process_fields = [
        StandardField::ProcessCount,
        StandardField::ProcessCpu,
        StandardField::ProcessMem,
    ];
    config
        .alerting
        .rules
        .rules()
        .iter()
        .filter_map(|r| {
            let key = r.field();
            let name = key.instance()?;
            let is_process = process_fields
                .iter()
                .any(|f| f.as_str() == key.field().as_str());
            let watched = config.monitoring.processes.iter().any(|w| &w.name == name);
            (is_process && !watched).then(|| {
                format!(
                    "rule {:?} reads {key}, but monitoring.processes has no entry named {:?}: a collector reading this file never reports it",
                    r.name(),
                    name.as_str()
                )
            })
        })
        .collect()
}

/// `check-config FILE`: the rules, both sections and the hooks.
pub fn check_config(path: &Path) -> u8 {
    match alerter::load_config(path) {
        Ok(alerter::LoadedConfig { config, hooks }) => {
            println!(
                "{}: valid; monitoring {} (every {}, kept {}), alerting {} (every {}, {} rule{}), hooks from {}{}{}",
                path.display(),
                if config.monitoring.enabled {
                    "enabled"
                } else {
                    "disabled"
                },
                config.monitoring.collection_interval,
                config.monitoring.retention_period,
                if config.alerting.enabled {
                    "enabled"
                } else {
                    "disabled"
                },
                config.alerting.watcher_interval,
                config.alerting.rules.len(),
                if config.alerting.rules.len() == 1 {
                    ""
                } else {
                    "s"
                },
                hooks.directory.display(),
                if hooks.webhooks.is_empty() {
                    String::new()
                } else {
                    format!(", {} webhook(s)", hooks.webhooks.len())
                },
                if hooks.alertmanager.is_some() {
                    ", Alertmanager"
                } else {
                    ""
                },
            );
            for rule in config.alerting.rules.rules() {
                println!("  {}", rule_summary(rule));
            }
            print_maintenance(&config);
            print_notifiers(&hooks);
            let m = &config.monitoring;
            for w in &m.processes {
                let (how, glob) = match &w.matcher {
                    ProcessMatch::Comm(g) => ("comm", g),
                    ProcessMatch::Exe(g) => ("exe", g),
                    ProcessMatch::Cmdline(g) => ("cmdline", g),
                };
                println!("  process {:?}: {how} {:?}", w.name.as_str(), glob.as_str());
            }
            for (what, sel) in [
                ("filesystems", &m.filesystems),
                ("interfaces", &m.interfaces),
                ("blockDevices", &m.block_devices),
            ] {
                if sel.include.is_empty() && sel.exclude.is_empty() {
                    continue;
                }
                let list = |g: &[metrics_model::glob::Glob]| {
                    g.iter()
                        .map(|g| format!("{:?}", g.as_str()))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                println!(
                    "  {what}: include [{}], exclude [{}]",
                    list(&sel.include),
                    list(&sel.exclude)
                );
            }
            for w in config
                .warnings()
                .into_iter()
                .chain(unwatched_processes(&config))
                .chain(alerter::config::hook_directory_warning(&config, &hooks))
            {
                println!("warning: {w}");
            }
            0
        }
        Err(problems) => {
            for p in &problems {
                println!("{p}");
            }
            eprintln!(
                "{}: {} problem{}",
                path.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            EXIT_BAD_INPUT
        }
    }
}

/// One rule as `check-config` lists it: `rule "Disk": max disk.usage >= 90
/// over 1m, cooldown 0s, hosts [web-*, !web-3], scope cluster, severity
/// critical, labels {team=ops}, staleAfter 5m, description "…"` (the
/// version-2 keys only when set; text escaped, so a name cannot forge a
/// line).
fn rule_summary(rule: &rules_engine::Rule) -> String {
    use std::fmt::Write as _;
    let op = match rule.operand() {
        rules_engine::Operand::EqualOrMoreThan => ">=",
        rules_engine::Operand::EqualOrLessThan => "<=",
    };
    let mut s = format!(
        "rule {:?}: {} {} {op} {} over {}, cooldown {}",
        rule.name(),
        rule.aggregation(),
        rule.field().to_string().escape_debug(),
        rule.value(),
        rule.timeframe(),
        rule.cooldown()
    );
    let meta = rule.meta();
    if let Some(hosts) = &meta.hosts {
        let hosts: Vec<String> = hosts
            .iter()
            .map(rules_engine::rule::HostPattern::to_text)
            .collect();
        let _ = write!(s, ", hosts [{}]", hosts.join(", "));
    }
    if meta.scope == rules_engine::rule::Scope::Cluster {
        s.push_str(", scope cluster");
    }
    if let Some(sev) = &meta.severity {
        let _ = write!(s, ", severity {sev}");
    }
    if let Some(labels) = &meta.labels {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}={}", v.escape_debug()))
            .collect();
        let _ = write!(s, ", labels {{{}}}", labels.join(", "));
    }
    if let Some(d) = meta.stale_after {
        let _ = write!(s, ", staleAfter {d}");
    }
    if let Some(d) = &meta.description {
        let _ = write!(s, ", description {d:?}");
    }
    s
}

fn load_rules(path: &Path) -> Result<(RuleSet, Option<Duration>), String> {
    load_rules_file(path).map(|f| (f.rules, f.watcher_interval))
}

fn load_rules_file(path: &Path) -> Result<RulesFile, String> {
    let text = read(path)?;
    rules_file_from_json_text(&text, &path.display().to_string()).map_err(|e| {
        let problems = e.problems();
        if problems.len() == 1 {
            format!("{}: {}", path.display(), problems[0])
        } else {
            format!(
                "{}: {} problems:\n  {}",
                path.display(),
                problems.len(),
                problems.join("\n  ")
            )
        }
    })
}

/// Reads a replay silences file (a JSON array of silences).
fn load_silences(path: &Path) -> Result<Vec<rules_engine::Silence>, String> {
    let text = read(path)?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}:{}:{}: invalid JSON: {e}",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    silences_from_json(&value).map_err(|problems| {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        format!("{}: {}", path.display(), list.join("; "))
    })
}

/// One line per maintenance window, with its next opening.
fn print_notifiers(hooks: &incidents::hooks::HooksConfig) {
    for n in &hooks.notifiers {
        println!(
            "  notifier {:?}: {} to {}{}",
            n.name,
            n.kind.as_str(),
            n.url.origin(),
            if n.send_resolved { "" } else { " (opens only)" }
        );
    }
}

fn print_maintenance(config: &rules_engine::config::Config) {
    let now = metrics_model::time::now_ms();
    for w in &config.alerting.maintenance {
        let next = w.next_range(now).map_or_else(
            || "never opens".to_owned(),
            |(open, close)| {
                format!(
                    "next {} to {}",
                    metrics_model::time::format_rfc3339(open),
                    metrics_model::time::format_rfc3339(close)
                )
            },
        );
        println!("  maintenance {:?}: {} ({next})", w.name, w.to_json());
    }
}

/// `replay --rules FILE [--watcher-interval D] [--silences FILE]`.
pub fn replay(
    rules_path: &Path,
    watcher_interval: Option<Duration>,
    silences_path: Option<&Path>,
) -> u8 {
    let fail = |msg: &str| {
        eprintln!("bp-alerter replay: {msg}");
        EXIT_BAD_INPUT
    };
    let file = match load_rules_file(rules_path) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let silences = match silences_path.map(load_silences).transpose() {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    let interval = watcher_interval
        .or(file.watcher_interval)
        .unwrap_or_else(|| Duration::from_secs(10).unwrap_or_default());
    let mut ticks = Vec::new();
    for (i, line) in io::stdin().lock().lines().enumerate() {
        let line = match line {
            Ok(l) => l,
            Err(e) => return fail(&format!("line {}: cannot read: {e}", i + 1)),
        };
        match Tick::parse_line(&line, i + 1) {
            Ok(Some(t)) => ticks.push(t),
            Ok(None) => {}
            Err(e) => return fail(&e.to_string()),
        }
    }
    let options = ReplayOptions::new(interval);
    // With silences or maintenance windows, every line carries `notifyAt`;
    // without, the version-1 lines exactly.
    let lines: Vec<String> = if silences.is_some() || !file.maintenance.is_empty() {
        let muting = Muting {
            silences: silences.unwrap_or_default(),
            windows: file.maintenance,
        };
        let engine = Engine::new(file.rules, EngineOptions::default());
        match replay_notified(engine, ticks, options, &muting) {
            Ok(t) => t
                .iter()
                .map(rules_engine::NotifiedTransition::to_json_line)
                .collect(),
            Err(e) => return fail(&e.to_string()),
        }
    } else {
        match run_replay(&file.rules, ticks, options) {
            Ok(t) => t
                .iter()
                .map(rules_engine::Transition::to_json_line)
                .collect(),
            Err(e) => return fail(&e.to_string()),
        }
    };
    let mut out = BufWriter::new(io::stdout().lock());
    for line in lines {
        if writeln!(out, "{line}").is_err() {
            // The reader went away (e.g. `| head`): nothing more to do.
            return 0;
        }
    }
    let _ = out.flush();
    0
}

/// `test-rules FILE...`.
pub fn test_rules(files: &[std::path::PathBuf]) -> u8 {
    let (mut passed, mut failed, mut bad_files) = (0usize, 0usize, 0usize);
    for path in files {
        let text = match read(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("bp-alerter test-rules: {e}");
                bad_files += 1;
                continue;
            }
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let loader = |rel: &str| load_rules(&dir.join(rel)).map(|(r, _)| r);
        let file = match TestFile::parse(&text, &path.display().to_string(), &loader) {
            Ok(f) => f,
            Err(e) => {
                for p in e.problems() {
                    eprintln!("{}: {p}", path.display());
                }
                bad_files += 1;
                continue;
            }
        };
        for outcome in file.run() {
            if outcome.passed {
                passed += 1;
                println!("PASS {}: {}", path.display(), outcome.name);
            } else {
                failed += 1;
                println!("FAIL {}: {}", path.display(), outcome.name);
                println!("  transitions (- expected, + got):");
                for line in outcome.diff.lines() {
                    println!("  {line}");
                }
            }
        }
    }
    println!("test-rules: {passed} passed, {failed} failed");
    if bad_files > 0 {
        eprintln!(
            "bp-alerter test-rules: {bad_files} file{} could not be read",
            if bad_files == 1 { "" } else { "s" }
        );
        EXIT_BAD_INPUT
    } else {
        u8::from(failed > 0)
    }
}

/// `notify-test`: sends a test incident's open and resolve through each
/// configured notifier (or the one named), bypassing its route, and prints
/// each outcome (the receiver's status, or the error with secrets
/// removed). 0 when every send succeeded, 1 when one failed, 2 on a bad
/// configuration or an unknown notifier.
pub fn notify_test(config: Option<&Path>, only: Option<&str>, host: &str) -> u8 {
    let Some(path) = config else {
        eprintln!(
            "bp-alerter notify-test: give the configuration file with --config (its alerting.notifiers)"
        );
        return crate::EXIT_BAD_INPUT;
    };
    let hooks = match alerter::load_config(path) {
        Ok(l) => l.hooks,
        Err(problems) => {
            for p in problems {
                eprintln!("{p}");
            }
            return crate::EXIT_BAD_INPUT;
        }
    };
    let chosen: Vec<_> = hooks
        .notifiers
        .iter()
        .filter(|n| only.is_none_or(|o| o == n.name))
        .cloned()
        .collect();
    if chosen.is_empty() {
        let names: Vec<&str> = hooks.notifiers.iter().map(|n| n.name.as_str()).collect();
        eprintln!(
            "bp-alerter notify-test: {} (configured: {})",
            only.map_or_else(
                || format!("{} has no alerting.notifiers", path.display()),
                |o| format!("no notifier named {o:?}")
            ),
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        );
        return crate::EXIT_BAD_INPUT;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bp-alerter notify-test: cannot start the runtime: {e}");
            return 1;
        }
    };
    let Ok(client) = incidents::hooks::webhook::http_client() else {
        eprintln!("bp-alerter notify-test: cannot build an HTTP client");
        return 1;
    };
    let mut failed = false;
    for n in chosen {
        let label = format!("{} ({}, {})", n.name, n.kind.as_str(), n.url.origin());
        let hook = incidents::notifiers::NotifierHook::new(n, client.clone(), hooks.timeout);
        let mut outcomes = Vec::new();
        for (i, tr) in incidents::notifiers::template::test_transitions(host)
            .into_iter()
            .enumerate()
        {
            let event = tr.event.as_str();
            let d = incidents::hooks::Delivery::new(i as u64 + 1, tr);
            match runtime.block_on(hook.send_now(&d)) {
                Ok(status) => outcomes.push(format!("{event}: sent ({status})")),
                Err(e) => {
                    failed = true;
                    outcomes.push(format!("{event}: failed: {e}"));
                    break;
                }
            }
        }
        println!("{label}: {}", outcomes.join("; "));
    }
    u8::from(failed)
}
