//! Version-1 replay output is unchanged by rules version 2: every scenario
//! of the golden corpus (`tests/golden/v1.jsonl`, recorded with the
//! bp-alerter before version 2 by `tests/golden/generate.py`) is replayed
//! through the current binary and must print the same lines, byte for byte,
//! incident ids aside (ids are random: each is replaced by its order of
//! first appearance on both sides).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

/// Replaces every `"id":"<uuid>"` by `"id":"#<n>"`, n = order of first
/// appearance.
fn normalise(lines: &[String]) -> Vec<String> {
    let mut ids: HashMap<String, usize> = HashMap::new();
    lines
        .iter()
        .map(|line| {
            let Some(start) = line.find("\"id\":\"") else {
                return line.clone();
            };
            let from = start + 6;
            let Some(len) = line[from..].find('"') else {
                return line.clone();
            };
            let id = &line[from..from + len];
            let next = ids.len();
            let n = *ids.entry(id.to_owned()).or_insert(next);
            format!("{}#{n}{}", &line[..from], &line[from + len..])
        })
        .collect()
}

#[test]
fn version_1_replay_output_is_unchanged() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v1.jsonl");
    let text = std::fs::read_to_string(&corpus).expect("the golden corpus");
    let dir = tempfile::tempdir().unwrap();
    let rules_path = dir.path().join("rules.json");
    let (mut scenarios, mut transitions) = (0, 0);
    for (n, line) in text.lines().enumerate() {
        let scenario: Value = serde_json::from_str(line).expect("a scenario");
        std::fs::write(&rules_path, scenario["rules"].to_string()).unwrap();
        let interval = scenario["interval"].as_str().unwrap();
        let ticks: Vec<&str> = scenario["ticks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        let expected: Vec<String> = scenario["expected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect();
        let mut child = Command::new(env!("CARGO_BIN_EXE_bp-alerter"))
            .args(["replay", "--rules"])
            .arg(&rules_path)
            .args(["--watcher-interval", interval])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = ticks.join("\n");
        input.push('\n');
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "scenario {}: {}",
            n + 1,
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        let (got, expected) = (normalise(&got), normalise(&expected));
        if got != expected {
            let at = got
                .iter()
                .zip(&expected)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(expected.len()));
            panic!(
                "scenario {} (line {} of {}): {} lines, expected {}; first difference at {at}:\n got      {:?}\n expected {:?}",
                n + 1,
                n + 1,
                corpus.display(),
                got.len(),
                expected.len(),
                got.get(at),
                expected.get(at)
            );
        }
        scenarios += 1;
        transitions += expected.len();
    }
    assert!(
        scenarios >= 300 && transitions > 1_000,
        "{scenarios} scenarios, {transitions} transitions"
    );
}
