//! File hooks with real processes: `*.js` files run by Node.js and
//! executable files run directly, through the dispatcher.

mod support;

use std::collections::HashMap;

use serde_json::{Value, json};
use support::*;

/// The seed's `alert.js`, byte for byte as the original's documentation
/// gives it.
const SEED_ALERT_JS: &str = "async function alertChanged() {
  if (!incident.endTime) {
    console.log('HOOK: Incident Opened:', incident)
  } else {
    console.log('HOOK: Incident Closed:', incident)
  }

  // Here you could send a SMS, an E-mail, etc...
  // await axios.post....
}

return alertChanged()
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_hook_in_seed_form_runs_and_its_output_reaches_the_log() {
    capture_logs();
    require_node();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("seedform.js"),
        "async function alertChanged() {
  if (!incident.endTime) {
    console.log('SEEDFORM opened', incident.ruleName, incident.hostName, incident.triggerValue, incident.endTime)
  } else {
    console.log('SEEDFORM resolved', incident.ruleName, incident.endTime)
  }
  bp.logger.warn('SEEDFORM logger', bp.event, bp.idempotencyKey)
}
return alertChanged()
",
    )
    .unwrap();
    let (dispatcher, mut rx) = start(&config(dir.path(), json!({})));
    let inc = incident("Seedform Rule", "node-js", 1_700_000_000_000, 91.5);
    dispatcher.submit(1, opened(&inc)).unwrap();
    dispatcher
        .submit(2, resolved(&inc, 1_700_000_060_000))
        .unwrap();
    let done = completions(&mut rx, 2).await;
    for c in &done {
        assert!(c.failures.is_empty(), "{:?}", c.failures);
    }
    let opened_lines = log_lines_with("SEEDFORM opened Seedform Rule node-js 91.5 undefined");
    assert_eq!(opened_lines.len(), 1, "log:\n{}", logs());
    assert!(opened_lines[0].contains("INFO"), "{}", opened_lines[0]);
    assert!(
        opened_lines[0].contains("hook=seedform.js"),
        "{}",
        opened_lines[0]
    );
    assert!(
        opened_lines[0].contains("stream=\"stdout\"") || opened_lines[0].contains("stream=stdout")
    );
    let resolved_lines = log_lines_with("SEEDFORM resolved Seedform Rule 2023-11-14T22:14:20.000Z");
    assert_eq!(resolved_lines.len(), 1, "log:\n{}", logs());
    let key = format!("{}:opened", inc.id);
    let logger = log_lines_with(&format!("SEEDFORM logger opened {key}"));
    assert_eq!(logger.len(), 1, "log:\n{}", logs());
    assert!(
        logger[0].contains("WARN"),
        "bp.logger.warn logs at warn: {}",
        logger[0]
    );
    let stats = dispatcher.stats();
    let js = stats
        .hooks
        .iter()
        .find(|h| h.hook == "seedform.js")
        .unwrap();
    assert_eq!((js.delivered, js.failed, js.retries), (2, 0, 0));
    dispatcher.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_alert_js_runs_unchanged() {
    capture_logs();
    require_node();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alert.js"), SEED_ALERT_JS).unwrap();
    let (dispatcher, mut rx) = start(&config(dir.path(), json!({})));
    let inc = incident("Seed Alert Rule", "node-seed", 1_700_000_000_000, 75.0);
    dispatcher.submit(10, opened(&inc)).unwrap();
    dispatcher
        .submit(11, resolved(&inc, 1_700_000_100_000))
        .unwrap();
    let done = completions(&mut rx, 2).await;
    for c in &done {
        assert!(c.failures.is_empty(), "{:?}", c.failures);
    }
    let id = inc.id.to_string();
    let all = logs();
    let opened = all
        .lines()
        .position(|l| l.contains("HOOK: Incident Opened:") && l.contains("hook=alert.js"));
    let opened = opened.unwrap_or_else(|| panic!("no opened line in log:\n{all}"));
    // console.log of the object: its fields on the following lines.
    let after: Vec<&str> = all.lines().skip(opened).take(12).collect();
    assert!(after.iter().any(|l| l.contains(&id)), "{after:#?}");
    assert!(
        after.iter().any(|l| l.contains("Seed Alert Rule")),
        "{after:#?}"
    );
    assert!(all.contains("HOOK: Incident Closed:"), "log:\n{all}");
    dispatcher.shutdown(DEADLINE).await;
}

/// A `.js` hook that writes what it sees of `incident` (and of
/// `bp.transition`) to `<out>/<event>.json`.
fn date_probe(out: &std::path::Path) -> String {
    format!(
        "const fs = require('fs')
const OUT = {out}
async function probe() {{
  const start = incident.startTime
  const seen = {{
    event: bp.event,
    keys: Object.keys(incident).sort(),
    startIsDate: start instanceof Date,
    startMs: start.getTime(),
    hasEndTime: 'endTime' in incident,
    endIsDate: incident.endTime instanceof Date,
    endMs: incident.endTime instanceof Date ? incident.endTime.getTime() : null,
    endNotBeforeStart: incident.endTime instanceof Date && incident.endTime.getTime() >= start.getTime(),
    transitionStart: bp.transition.incident.startTime,
    transitionEnd: bp.transition.incident.endTime,
  }}
  fs.writeFileSync(OUT + '/' + bp.event + '.json', JSON.stringify(seen))
}}
return probe()
",
        out = serde_json::to_string(&out.display().to_string()).unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_hooks_get_dates_and_no_end_time_while_open() {
    capture_logs();
    require_node();
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dates.js"), date_probe(out.path())).unwrap();
    let (dispatcher, mut rx) = start(&config(dir.path(), json!({"maxAttempts": 1})));
    let inc = incident("Date Rule", "node-date", 1_700_000_000_000, 42.0);
    dispatcher.submit(1, opened(&inc)).unwrap();
    dispatcher
        .submit(2, resolved(&inc, 1_700_000_060_000))
        .unwrap();
    let done = completions(&mut rx, 2).await;
    for c in &done {
        assert!(c.failures.is_empty(), "{:?}\nlog:\n{}", c.failures, logs());
    }
    let read = |event: &str| -> Value {
        let path = out.path().join(format!("{event}.json"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}\nlog:\n{}", path.display(), logs()));
        serde_json::from_str(&text).unwrap()
    };
    assert_eq!(
        read("opened"),
        json!({
            "event": "opened",
            "keys": ["hostName", "id", "ruleName", "startTime", "triggerValue"],
            "startIsDate": true,
            "startMs": 1_700_000_000_000_i64,
            "hasEndTime": false,
            "endIsDate": false,
            "endMs": null,
            "endNotBeforeStart": false,
            "transitionStart": "2023-11-14T22:13:20.000Z",
            "transitionEnd": null,
        }),
        "while open, endTime is not a key of incident; bp.transition keeps the JSON"
    );
    assert_eq!(
        read("resolved"),
        json!({
            "event": "resolved",
            "keys": ["endTime", "hostName", "id", "ruleName", "startTime", "triggerValue"],
            "startIsDate": true,
            "startMs": 1_700_000_000_000_i64,
            "hasEndTime": true,
            "endIsDate": true,
            "endMs": 1_700_000_060_000_i64,
            "endNotBeforeStart": true,
            "transitionStart": "2023-11-14T22:13:20.000Z",
            "transitionEnd": "2023-11-14T22:14:20.000Z",
        })
    );
    dispatcher.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_js_hook_is_retried_then_dead_lettered_with_its_error() {
    capture_logs();
    require_node();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("reject.js"),
        "async function go() { throw new Error('REJECTJS boom for ' + incident.ruleName) }\nreturn go()\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("syntax.js"), "return (((\n").unwrap();
    let (dispatcher, mut rx) = start(&config(dir.path(), json!({"maxAttempts": 2})));
    let inc = incident("Reject Rule", "node-rej", 1_700_000_000_000, 1.0);
    dispatcher.submit(1, opened(&inc)).unwrap();
    let c = completions(&mut rx, 1).await.remove(0);
    assert_eq!(c.failures.len(), 2, "{:?}", c.failures);
    let reject = &c.failures[0];
    assert_eq!(reject.hook, "reject.js");
    assert_eq!(reject.attempts, 2);
    assert!(
        reject
            .error
            .starts_with("hook reject.js: exit status 1; last stderr line: "),
        "{}",
        reject.error
    );
    let syntax = &c.failures[1];
    assert_eq!(syntax.hook, "syntax.js");
    assert!(syntax.error.contains("exit status 1"), "{}", syntax.error);
    assert!(
        logs().contains("REJECTJS boom for Reject Rule"),
        "the error reaches the log"
    );
    let dead = c.dead_letters(5);
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].payload, opened(&inc).to_json_line());
    assert!(
        dead[0].error.ends_with("(after 2 attempts)"),
        "{}",
        dead[0].error
    );
    let stats = dispatcher.stats();
    let r = stats.hooks.iter().find(|h| h.hook == "reject.js").unwrap();
    assert_eq!((r.delivered, r.failed, r.retries), (0, 1, 1));
    dispatcher.shutdown(DEADLINE).await;
}

/// A hook that appends one line per call and dumps its environment and
/// stdin to files named after the idempotency key.
fn recorder(out: &std::path::Path) -> String {
    format!(
        "#!/bin/sh\npayload=$(cat)\nprintf '%s\\n' \"$BP_IDEMPOTENCY_KEY\" >> {out}/calls.log\nenv | grep '^BP_' > \"{out}/$BP_IDEMPOTENCY_KEY.env\"\nprintf '%s' \"$payload\" > \"{out}/$BP_IDEMPOTENCY_KEY.json\"\n",
        out = out.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn executable_hook_one_line_per_transition_with_env_and_stdin() {
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    write_executable(&dir.path().join("record.sh"), &recorder(out.path()));
    let (dispatcher, mut rx) = start(&config(dir.path(), json!({})));
    let a = incident("Exec Rule", "node-a", 1_700_000_000_000, 80.0);
    let mut b = incident("Exec Rule", "node-b", 1_700_000_010_000, 12.25);
    // Version 2: an instance (arbitrary text: never interpolated) and a severity.
    b.instance = Some("/data (x)*? $(id) `x`".parse().unwrap());
    b.severity = Some("critical".into());
    let transitions = [opened(&a), opened(&b), resolved(&a, 1_700_000_020_000)];
    for (i, t) in transitions.iter().enumerate() {
        assert!(dispatcher.submit(i as u64 + 1, t.clone()).unwrap());
    }
    let done = completions(&mut rx, 3).await;
    assert!(done.iter().all(|c| c.failures.is_empty()), "{done:?}");
    let mut lines = read_lines(&out.path().join("calls.log"));
    lines.sort();
    let mut expected: Vec<String> = transitions
        .iter()
        .map(rules_engine::Transition::idempotency_key)
        .collect();
    expected.sort();
    assert_eq!(lines, expected, "exactly one line per transition");

    let key = format!("{}:resolved", a.id);
    let env: HashMap<String, String> = env_file(&out.path().join(format!("{key}.env")))
        .into_iter()
        .collect();
    let want = [
        ("BP_INCIDENT_ID", a.id.to_string()),
        ("BP_INCIDENT_RULE_NAME", "Exec Rule".into()),
        ("BP_INCIDENT_HOST_NAME", "node-a".into()),
        ("BP_INCIDENT_INSTANCE", String::new()),
        ("BP_INCIDENT_SEVERITY", String::new()),
        ("BP_INCIDENT_START_TIME", "2023-11-14T22:13:20.000Z".into()),
        ("BP_INCIDENT_END_TIME", "2023-11-14T22:13:40.000Z".into()),
        ("BP_INCIDENT_TRIGGER_VALUE", "80.0".into()),
        ("BP_INCIDENT_EVENT", "resolved".into()),
        ("BP_IDEMPOTENCY_KEY", key.clone()),
    ];
    for (k, v) in want {
        assert_eq!(env.get(k), Some(&v), "{k} in {env:?}");
    }
    let open_env: HashMap<String, String> =
        env_file(&out.path().join(format!("{}:opened.env", b.id)))
            .into_iter()
            .collect();
    assert_eq!(
        open_env.get("BP_INCIDENT_END_TIME").map(String::as_str),
        Some("")
    );
    assert_eq!(
        open_env
            .get("BP_INCIDENT_TRIGGER_VALUE")
            .map(String::as_str),
        Some("12.25")
    );
    assert_eq!(
        open_env.get("BP_INCIDENT_INSTANCE").map(String::as_str),
        Some("/data (x)*? $(id) `x`")
    );
    assert_eq!(
        open_env.get("BP_INCIDENT_SEVERITY").map(String::as_str),
        Some("critical")
    );
    let b_stdin: Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join(format!("{}:opened.json", b.id))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        b_stdin["incident"]["instance"],
        json!("/data (x)*? $(id) `x`")
    );
    assert_eq!(b_stdin["incident"]["severity"], json!("critical"));

    let stdin: Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join(format!("{key}.json"))).unwrap(),
    )
    .unwrap();
    let mut expected_stdin = serde_json::to_value(&transitions[2]).unwrap();
    expected_stdin["idempotencyKey"] = json!(key);
    assert_eq!(stdin, expected_stdin);
    assert_eq!(
        stdin["incident"]["endTime"],
        json!("2023-11-14T22:13:40.000Z")
    );
    dispatcher.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_metacharacters_in_fields_are_passed_verbatim_and_never_run() {
    capture_logs();
    require_node();
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let pwned = out.path().join("pwned");
    let pwned2 = out.path().join("pwned2");
    let nasty = format!(
        "x$(touch {}); `touch {}` \"q\" 'q' ; | & > < \\ $HOME",
        pwned.display(),
        pwned2.display()
    );
    write_executable(&dir.path().join("record.sh"), &recorder(out.path()));
    std::fs::write(
        dir.path().join("echo.js"),
        "console.log('NASTYJS ' + JSON.stringify(incident.ruleName))\n",
    )
    .unwrap();
    let (dispatcher, mut rx) = start(&config(dir.path(), json!({})));
    let inc = incident(&nasty, "node-x", 1_700_000_000_000, 1.0);
    dispatcher.submit(1, opened(&inc)).unwrap();
    let c = completions(&mut rx, 1).await.remove(0);
    assert!(c.failures.is_empty(), "{:?}", c.failures);
    let key = format!("{}:opened", inc.id);
    let env: HashMap<String, String> = env_file(&out.path().join(format!("{key}.env")))
        .into_iter()
        .collect();
    assert_eq!(env.get("BP_INCIDENT_RULE_NAME"), Some(&nasty));
    let stdin: Value = serde_json::from_str(
        &std::fs::read_to_string(out.path().join(format!("{key}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(stdin["incident"]["ruleName"], json!(nasty));
    let js = log_lines_with("NASTYJS ");
    assert_eq!(js.len(), 1, "log:\n{}", logs());
    assert!(
        js[0].contains(&serde_json::to_string(&nasty).unwrap()),
        "{}",
        js[0]
    );
    assert!(!pwned.exists(), "a rule name was executed by a shell");
    assert!(!pwned2.exists(), "a rule name was executed by a shell");
    dispatcher.shutdown(DEADLINE).await;
}

fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // A zombie waiting for a (container) init to reap it is dead too.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_hook_is_killed_at_its_timeout_and_others_keep_being_delivered() {
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let pid_file = out.path().join("sleep.pid");
    write_executable(
        &dir.path().join("hang.sh"),
        &format!(
            "#!/bin/sh\nif [ \"$BP_INCIDENT_RULE_NAME\" = hang ]; then\n  sleep 1000 &\n  echo $! > {}\n  wait\nfi\n",
            pid_file.display()
        ),
    );
    write_executable(&dir.path().join("record.sh"), &recorder(out.path()));
    let (dispatcher, mut rx) = start(&config(
        dir.path(),
        json!({"timeout": "3s", "maxAttempts": 1}),
    ));
    let hang = incident("hang", "node-h", 1_700_000_000_000, 1.0);
    assert_eq!(dispatcher.submit(1, opened(&hang)), Ok(true));
    // Submitting a pending seq again is a no-op (it hangs for 3 s).
    assert_eq!(dispatcher.submit(1, opened(&hang)), Ok(false));
    assert!(dispatcher.is_pending(1));
    let mut others = Vec::new();
    for i in 0..4 {
        let inc = incident(&format!("other-{i}"), "node-h", 1_700_000_000_000, 1.0);
        dispatcher.submit(2 + i, opened(&inc)).unwrap();
        others.push(inc);
    }
    let done = completions(&mut rx, 5).await;
    // The four others complete while the hanging one waits for its timeout.
    let order: Vec<u64> = done.iter().map(|c| c.seq).collect();
    assert_eq!(
        order[4], 1,
        "the hanging delivery completes last: {order:?}"
    );
    for c in &done[..4] {
        assert!(c.failures.is_empty(), "{:?}", c.failures);
    }
    let killed = &done[4];
    assert_eq!(killed.failures.len(), 1, "{:?}", killed.failures);
    assert_eq!(killed.failures[0].hook, "hang.sh");
    assert_eq!(
        killed.failures[0].error,
        "hook hang.sh: timed out after 3s; its process group was killed"
    );
    // record.sh ran for all five, hang.sh's background child is dead.
    assert_eq!(read_lines(&out.path().join("calls.log")).len(), 5);
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    eventually("the hook's background child to be killed", || {
        process_gone(pid)
    })
    .await;
    let stats = dispatcher.stats();
    let h = stats.hooks.iter().find(|h| h.hook == "hang.sh").unwrap();
    assert_eq!((h.delivered, h.failed, h.timeouts), (4, 1, 1));
    assert_eq!(stats.pending, 0);
    assert_eq!(stats.running_processes, 0);
    dispatcher.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_per_rule_and_host_stay_in_order_under_concurrency() {
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    // Opens are slow: without per-key order, resolves would be logged first.
    write_executable(
        &dir.path().join("ordered.sh"),
        &format!(
            "#!/bin/sh\nif [ \"$BP_INCIDENT_EVENT\" = opened ]; then sleep 0.3; fi\nprintf '%s %s %s\\n' \"$BP_INCIDENT_HOST_NAME\" \"$BP_INCIDENT_EVENT\" \"$BP_INCIDENT_ID\" >> {}/calls.log\n",
            out.path().display()
        ),
    );
    let (dispatcher, mut rx) = start(&config(dir.path(), json!({"concurrency": 4})));
    let mut seq = 0;
    let mut expected: HashMap<String, Vec<String>> = HashMap::new();
    let mut all = Vec::new();
    // Two incidents in a row per host: open, resolve, open, resolve.
    for round in 0..2 {
        let incs: Vec<_> = (0..6)
            .map(|h| incident("Order", &format!("node-{h}"), 1_000 + round, 1.0))
            .collect();
        for inc in &incs {
            all.push(opened(inc));
        }
        for inc in &incs {
            all.push(resolved(inc, 2_000 + round));
        }
    }
    for t in &all {
        seq += 1;
        dispatcher.submit(seq, t.clone()).unwrap();
        expected
            .entry(t.incident.host_name.as_str().to_owned())
            .or_default()
            .push(format!("{} {}", t.event.as_str(), t.incident.id));
    }
    let done = completions(&mut rx, all.len()).await;
    assert!(done.iter().all(|c| c.failures.is_empty()));
    let mut got: HashMap<String, Vec<String>> = HashMap::new();
    for line in read_lines(&out.path().join("calls.log")) {
        let (host, rest) = line.split_once(' ').unwrap();
        got.entry(host.to_owned())
            .or_default()
            .push(rest.to_owned());
    }
    assert_eq!(got, expected);
    dispatcher.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_concurrency_hook_processes_run_at_once() {
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let running = out.path().join("running");
    std::fs::create_dir(&running).unwrap();
    // Marker: one file per live process; each counts the files after
    // creating its own (never more than the processes alive).
    let script = format!(
        "#!/bin/sh\ntouch {r}/$$\nls {r} | wc -l >> {o}/counts\nsleep 0.3\nrm {r}/$$\n",
        r = running.display(),
        o = out.path().display()
    );
    write_executable(&dir.path().join("a.sh"), &script);
    write_executable(&dir.path().join("b.sh"), &script);
    let (dispatcher, mut rx) = start(&config(dir.path(), json!({"concurrency": 3})));
    for i in 0..10 {
        let inc = incident("Limit", &format!("node-{i}"), 1_000, 1.0);
        dispatcher.submit(i + 1, opened(&inc)).unwrap();
    }
    let mut max_reported = 0;
    let mut received = Vec::new();
    while received.len() < 10 {
        max_reported = max_reported.max(dispatcher.stats().running_processes);
        if let Ok(Some(c)) =
            tokio::time::timeout(std::time::Duration::from_millis(50), rx.recv()).await
        {
            received.push(c);
        }
    }
    assert!(received.iter().all(|c| c.failures.is_empty()));
    let counts: Vec<usize> = read_lines(&out.path().join("counts"))
        .iter()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(counts.len(), 20, "two hooks × ten transitions");
    let max = counts.iter().copied().max().unwrap();
    assert!(
        max <= 3,
        "{max} hook processes ran at once with concurrency 3: {counts:?}"
    );
    assert_eq!(
        max, 3,
        "20 slow calls should have filled all 3 slots: {counts:?}"
    );
    assert!(max_reported <= 3, "stats reported {max_reported}");
    dispatcher.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_files_are_ignored_with_one_warning_and_a_missing_directory_is_fine() {
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("IGNORED-notes.txt"), "not a hook").unwrap();
    std::fs::write(dir.path().join(".hidden.swp"), "editor file").unwrap();
    std::fs::create_dir(dir.path().join("IGNORED-subdir")).unwrap();
    write_executable(&dir.path().join("record.sh"), &recorder(out.path()));
    let (dispatcher, mut rx) = start(&config(dir.path(), json!({})));
    for i in 0..3 {
        let inc = incident("Ignore", &format!("node-{i}"), 1_000, 1.0);
        dispatcher.submit(i + 1, opened(&inc)).unwrap();
    }
    let done = completions(&mut rx, 3).await;
    assert!(done.iter().all(|c| c.failures.is_empty()), "{done:?}");
    assert_eq!(read_lines(&out.path().join("calls.log")).len(), 3);
    let warned = log_lines_with("IGNORED-notes.txt");
    assert_eq!(warned.len(), 1, "one warning per file: {warned:?}");
    assert!(
        warned[0].contains("WARN") && warned[0].contains("hook file ignored"),
        "{}",
        warned[0]
    );
    assert_eq!(log_lines_with("IGNORED-subdir").len(), 1);
    assert!(log_lines_with(".hidden.swp").is_empty());
    let stats = dispatcher.stats();
    assert_eq!(
        stats
            .hooks
            .iter()
            .map(|h| h.hook.as_str())
            .collect::<Vec<_>>(),
        ["record.sh"]
    );
    dispatcher.shutdown(DEADLINE).await;

    let missing = dir.path().join("does-not-exist");
    let (dispatcher, mut rx) = start(&config(&missing, json!({})));
    dispatcher
        .submit(1, opened(&incident("Ignore", "node-m", 1, 1.0)))
        .unwrap();
    let c = completions(&mut rx, 1).await.remove(0);
    assert!(c.failures.is_empty());
    dispatcher.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_output_is_bounded_and_a_failing_exit_reports_its_last_stderr_line() {
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    write_executable(
        &dir.path().join("noisy.sh"),
        "#!/bin/sh\ni=0\nwhile [ $i -lt 1000 ]; do echo \"NOISY line $i\"; i=$((i+1)); done\nhead -c 100000 /dev/zero | tr '\\0' 'x'\necho\necho 'NOISY first error' >&2\necho 'NOISY final error' >&2\nexit 3\n",
    );
    let (dispatcher, mut rx) = start(&config(dir.path(), json!({"maxAttempts": 1})));
    dispatcher
        .submit(1, opened(&incident("Noisy", "node-n", 1, 1.0)))
        .unwrap();
    let c = completions(&mut rx, 1).await.remove(0);
    assert_eq!(c.failures.len(), 1);
    assert_eq!(
        c.failures[0].error,
        "hook noisy.sh: exit status 3; last stderr line: NOISY final error"
    );
    let logged = log_lines_with("NOISY line ");
    assert_eq!(
        logged.len(),
        200,
        "at most 200 stdout lines per call are logged"
    );
    assert!(
        logs().contains("801 more lines not logged"),
        "log tail:\n{}",
        logs().lines().rev().take(5).collect::<Vec<_>>().join("\n")
    );
    assert_eq!(log_lines_with("NOISY first error").len(), 1);
    dispatcher.shutdown(DEADLINE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_and_shutdown_finishes_in_flight_work_then_kills_the_rest() {
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    write_executable(
        &dir.path().join("slow.sh"),
        &format!(
            "#!/bin/sh\nif [ \"$BP_INCIDENT_RULE_NAME\" = hang ]; then\n  sleep 1000 &\n  echo $! > {o}/hang.pid\n  wait\nfi\ntouch {o}/quick.started\nsleep 0.3\necho \"$BP_IDEMPOTENCY_KEY\" >> {o}/calls.log\n",
            o = out.path().display()
        ),
    );
    let config = config(dir.path(), json!({}));
    let (dispatcher, mut rx) = incidents::delivery::Dispatcher::start(
        &config,
        incidents::delivery::DispatcherOptions {
            queue_capacity: 3,
            ..Default::default()
        },
    )
    .unwrap();
    let hang = incident("hang", "node-s", 1_000, 1.0);
    let quick = incident("quick", "node-s", 1_000, 1.0);
    assert_eq!(dispatcher.submit(1, opened(&hang)), Ok(true));
    assert_eq!(dispatcher.submit(2, resolved(&hang, 2_000)), Ok(true));
    assert_eq!(dispatcher.submit(3, opened(&quick)), Ok(true));
    assert_eq!(
        dispatcher.submit(4, resolved(&quick, 2_000)),
        Err(incidents::delivery::SubmitError::Full {
            seq: 4,
            capacity: 3
        })
    );
    let pid_file = out.path().join("hang.pid");
    eventually("the hanging hook to start", || pid_file.exists()).await;
    let pid: u32 = loop {
        if let Ok(pid) = std::fs::read_to_string(&pid_file).unwrap().trim().parse() {
            break pid;
        }
        tokio::task::yield_now().await;
    };
    // Shut down only once seq 3 is in flight: a call still queued at
    // shutdown is abandoned (never started), which is not what this tests.
    let quick_started = out.path().join("quick.started");
    eventually("the quick hook to start", || quick_started.exists()).await;
    let report = dispatcher.shutdown(std::time::Duration::from_secs(3)).await;
    // seq 3 finished within the grace period; seq 1 was cancelled and seq 2
    // (queued behind it) never started: both stay in the outbox.
    assert_eq!(report.abandoned, [1, 2]);
    let c = completions(&mut rx, 1).await.remove(0);
    assert_eq!(c.seq, 3);
    assert!(c.failures.is_empty());
    assert!(
        rx.recv().await.is_none(),
        "no other completion; the channel closes"
    );
    assert_eq!(
        read_lines(&out.path().join("calls.log")),
        [format!("{}:opened", quick.id)]
    );
    eventually("the cancelled hook's process group to be killed", || {
        process_gone(pid)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_node_executable_is_a_clear_failure() {
    capture_logs();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alert.js"), SEED_ALERT_JS).unwrap();
    let (dispatcher, mut rx) = start(&config(
        dir.path(),
        json!({"node": "/nonexistent/bin/node", "maxAttempts": 1}),
    ));
    dispatcher
        .submit(1, opened(&incident("No Node", "node-n", 1, 1.0)))
        .unwrap();
    let c = completions(&mut rx, 1).await.remove(0);
    assert_eq!(c.failures.len(), 1);
    assert_eq!(
        c.failures[0].error,
        "hook alert.js: cannot start /nonexistent/bin/node: No such file or directory (os error 2); \
         *.js hooks need Node.js: install it or set alerting.hooks.node"
    );
    dispatcher.shutdown(DEADLINE).await;
}
