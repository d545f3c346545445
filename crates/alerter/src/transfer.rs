//! `bp-alerter export` / `import`: the whole state of a deployment as JSON
//! lines, so that a user moves from standalone to a cluster (or back)
//! without a receiver left with a dangling incident.
//!
//! The file: every stored tick as one line in the replay format
//! (`{"host","ts","values"}`, as `bp-alerter replay` and `bp-collector
//! import` read), and the alert state as lines with a `"record"` key:
//!
//! | `record` | fields | what |
//! |---|---|---|
//! | `export` | `version` (1), `exportedAt`, `lastEvaluated` | first line |
//! | `state` | `key`, `value` (the state's JSON, as a string) | open incidents and cooldowns |
//! | `outbox` | `seq`, `payload` | transitions not yet delivered |
//! | `resolved` | `end`, `id`, `incident` | the resolved history |
//! | `deadLetter` | `at`, `hook`, `error`, `payload` | failed deliveries |
//! | `silence`, `acknowledgement` | `id`, `version`, `keepUntil`, `json` | silences and acknowledgements (written only where the target has no record of that id) |
//!
//! Import reads and checks the whole file first (a bad line is an error
//! naming its number; nothing is written then), appends the ticks
//! (idempotent: importing twice stores each tick once), and writes the
//! alert state with [`AlertStore::restore`] under a lease of its own: it
//! refuses when an alerter holds the lease (stop the alerters first), and
//! raises the target's fencing-token counter past its own lease.

use std::io::{BufRead, Write};

use metrics_model::Tick;
use metrics_model::store::{
    AlertRestore, AlertStore, DeadLetter, OutboxEntry, Record, RecordKind, TickStore,
};
use metrics_model::time::{Millis, now_ms};
use serde_json::{Value, json};

/// The export format's version.
pub const VERSION: u64 = 1;

/// Ticks appended per store call on import.
const BATCH: usize = 1000;

/// Resolved incidents and dead letters exported at most.
const HISTORY_MAX: usize = 1_000_000;

/// What an export or an import moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Moved {
    /// Ticks (imported: stored; duplicates not counted).
    pub ticks: usize,
    /// Incident states.
    pub states: usize,
    /// Undelivered outbox entries.
    pub outbox: usize,
    /// Resolved incidents.
    pub resolved: usize,
    /// Dead letters.
    pub dead_letters: usize,
    /// Silences and acknowledgements.
    pub records: usize,
}

impl std::fmt::Display for Moved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ticks, {} incident states, {} undelivered transitions, {} resolved incidents, {} dead letters, {} silences and acknowledgements",
            self.ticks, self.states, self.outbox, self.resolved, self.dead_letters, self.records
        )
    }
}

/// Writes everything `ticks` and `alerts` hold to `out`.
///
/// # Errors
/// A store or write failure, as text.
pub async fn export<T: TickStore, A: AlertStore>(
    ticks: &T,
    alerts: &A,
    out: &mut impl Write,
) -> Result<Moved, String> {
    let mut moved = Moved::default();
    let snapshot = alerts.load().await.map_err(|e| e.to_string())?;
    let io = |e: std::io::Error| format!("writing the export: {e}");
    writeln!(
        out,
        "{}",
        json!({ "record": "export", "version": VERSION, "exportedAt": now_ms(),
                "lastEvaluated": snapshot.last_evaluated })
    )
    .map_err(io)?;
    for host in ticks.hosts().await.map_err(|e| e.to_string())? {
        for t in ticks
            .range(&host.host, Millis::MIN, Millis::MAX)
            .await
            .map_err(|e| e.to_string())?
        {
            writeln!(out, "{}", t.to_json_line()).map_err(io)?;
            moved.ticks += 1;
        }
    }
    for (key, value) in &snapshot.states {
        writeln!(
            out,
            "{}",
            json!({ "record": "state", "key": key, "value": value })
        )
        .map_err(io)?;
        moved.states += 1;
    }
    for e in alerts.outbox(usize::MAX).await.map_err(|e| e.to_string())? {
        writeln!(
            out,
            "{}",
            json!({ "record": "outbox", "seq": e.seq, "payload": e.payload })
        )
        .map_err(io)?;
        moved.outbox += 1;
    }
    for inc in alerts
        .resolved(Millis::MIN, Millis::MAX, HISTORY_MAX)
        .await
        .map_err(|e| e.to_string())?
    {
        let parsed = incidents::persist::decode_incident(&inc).ok();
        let (end, id) = parsed.map_or((0, String::new()), |i| {
            (i.end_time.unwrap_or(0), i.id.to_string())
        });
        writeln!(
            out,
            "{}",
            json!({ "record": "resolved", "end": end, "id": id, "incident": inc })
        )
        .map_err(io)?;
        moved.resolved += 1;
    }
    for d in alerts
        .dead_letters(HISTORY_MAX)
        .await
        .map_err(|e| e.to_string())?
    {
        writeln!(
            out,
            "{}",
            json!({ "record": "deadLetter", "at": d.at, "hook": d.hook, "error": d.error,
                    "payload": d.payload })
        )
        .map_err(io)?;
        moved.dead_letters += 1;
    }
    for kind in [RecordKind::Silence, RecordKind::Acknowledgement] {
        for r in alerts.records(kind).await.map_err(|e| e.to_string())? {
            writeln!(
                out,
                "{}",
                json!({ "record": kind.as_str(), "id": r.id, "version": r.version,
                        "keepUntil": r.keep_until, "json": r.json })
            )
            .map_err(io)?;
            moved.records += 1;
        }
    }
    out.flush().map_err(io)?;
    Ok(moved)
}

/// What an export file holds, read and checked.
#[derive(Debug, Default)]
pub struct ExportFile {
    /// The ticks.
    pub ticks: Vec<Tick>,
    /// The alert state.
    pub image: AlertRestore,
    /// Whether the file had its `export` header line (a file of ticks only
    /// has none and carries no alert state).
    pub has_header: bool,
}

/// Reads an export (or a plain file of ticks) from `input`.
///
/// # Errors
/// The first bad line: its number and what is wrong.
pub fn read(input: impl BufRead) -> Result<ExportFile, String> {
    let mut file = ExportFile::default();
    for (i, line) in input.lines().enumerate() {
        let n = i + 1;
        let line = line.map_err(|e| format!("line {n}: cannot read: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        if !line.contains("\"record\"") {
            if let Some(t) = Tick::parse_line(&line, n).map_err(|e| e.to_string())? {
                file.ticks.push(t);
            }
            continue;
        }
        let v: Value =
            serde_json::from_str(&line).map_err(|e| format!("line {n}: not JSON: {e}"))?;
        let field = |name: &str| {
            v.get(name)
                .ok_or_else(|| format!("line {n}: record without \"{name}\""))
        };
        let text = |name: &str| -> Result<String, String> {
            field(name)?
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("line {n}: \"{name}\" is not a string"))
        };
        let int = |name: &str| -> Result<i64, String> {
            field(name)?
                .as_i64()
                .ok_or_else(|| format!("line {n}: \"{name}\" is not an integer"))
        };
        match v.get("record").and_then(Value::as_str) {
            Some("export") => {
                let version = field("version")?.as_u64();
                if version != Some(VERSION) {
                    return Err(format!(
                        "line {n}: export version {version:?}; this bp-alerter reads version {VERSION}"
                    ));
                }
                file.has_header = true;
                file.image.last_evaluated = v.get("lastEvaluated").and_then(Value::as_i64);
            }
            Some("state") => file.image.states.push((text("key")?, text("value")?)),
            Some("outbox") => {
                let seq = u64::try_from(int("seq")?)
                    .map_err(|_| format!("line {n}: \"seq\" is negative"))?;
                file.image.outbox_seq = file.image.outbox_seq.max(seq);
                file.image.outbox.push(OutboxEntry {
                    seq,
                    payload: text("payload")?,
                });
            }
            Some("resolved") => {
                file.image
                    .resolved
                    .push((int("end")?, text("id")?, text("incident")?));
            }
            Some("deadLetter") => file.image.dead_letters.push(DeadLetter {
                at: int("at")?,
                hook: text("hook")?,
                error: text("error")?,
                payload: text("payload")?,
            }),
            Some(kind @ ("silence" | "acknowledgement")) => {
                let kind = if kind == "silence" {
                    RecordKind::Silence
                } else {
                    RecordKind::Acknowledgement
                };
                let version = u64::try_from(int("version")?)
                    .map_err(|_| format!("line {n}: \"version\" is negative"))?;
                file.image.records.push((
                    kind,
                    Record {
                        id: text("id")?,
                        version,
                        keep_until: int("keepUntil")?,
                        json: text("json")?,
                    },
                ));
            }
            other => {
                return Err(format!("line {n}: unknown record {other:?}"));
            }
        }
    }
    if !file.has_header && file.image != AlertRestore::default() {
        return Err("the file has alert-state records but no export header line".into());
    }
    Ok(file)
}

/// Writes `file` into the stores.
///
/// # Errors
/// The lease is held by an alerter (stop it first), or a store failure.
pub async fn import<T: TickStore, A: AlertStore>(
    ticks: &T,
    alerts: &A,
    file: &ExportFile,
    holder: &str,
) -> Result<Moved, String> {
    let mut moved = Moved::default();
    if file.has_header {
        // Taken first, so that no alerter starts evaluating half an import.
        let token = alerts
            .acquire_lease(holder, 10 * 60 * 1000)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                "an alerter holds the lease of the target store: stop every bp-alerter using it, then import".to_owned()
            })?;
        let result = async {
            for chunk in file.ticks.chunks(BATCH) {
                moved.ticks += ticks
                    .append(chunk)
                    .await
                    .map_err(|e| e.to_string())?
                    .written;
            }
            alerts
                .restore(holder, token, &file.image)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        let _ = alerts.release_lease(holder, token).await;
        result?;
        moved.states = file.image.states.len();
        moved.outbox = file.image.outbox.len();
        moved.resolved = file.image.resolved.len();
        moved.dead_letters = file.image.dead_letters.len();
        moved.records = file.image.records.len();
    } else {
        for chunk in file.ticks.chunks(BATCH) {
            moved.ticks += ticks
                .append(chunk)
                .await
                .map_err(|e| e.to_string())?
                .written;
        }
    }
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_model::store::AlertCommit;
    use metrics_model::{MemoryAlertStore, MemoryStore};

    #[tokio::test]
    async fn a_round_trip_moves_everything_and_bad_lines_are_named() {
        let (ticks, alerts) = (MemoryStore::new(), MemoryAlertStore::new());
        let host: metrics_model::HostName = "h".parse().unwrap();
        ticks
            .append(&[Tick::new(
                host.clone(),
                1_000,
                [("cpu.usage".parse().unwrap(), 5.0)],
            )])
            .await
            .unwrap();
        let t = alerts.acquire_lease("a", 1000).await.unwrap().unwrap();
        alerts
            .commit(
                "a",
                t,
                &AlertCommit {
                    evaluated_at: 2_000,
                    expect_last_evaluated: None,
                    states: vec![("k".into(), Some("{\"open\":1}".into()))],
                    outbox: vec!["o1".into(), "o2".into()],
                    resolved: vec![],
                },
            )
            .await
            .unwrap();
        alerts.ack(&[1]).await.unwrap();
        alerts.release_lease("a", t).await.unwrap();
        alerts
            .put_record(RecordKind::Silence, "s1", "{\"x\":1}", 9_000, 0)
            .await
            .unwrap();
        alerts
            .put_record(RecordKind::Silence, "s1", "{\"x\":2}", 9_000, 1)
            .await
            .unwrap();
        alerts
            .put_record(RecordKind::Acknowledgement, "a1", "{}", Millis::MAX, 0)
            .await
            .unwrap();
        let mut buf = Vec::new();
        let out = export(&ticks, &alerts, &mut buf).await.unwrap();
        assert_eq!((out.ticks, out.states, out.outbox), (1, 1, 1));

        let file = read(buf.as_slice()).unwrap();
        let (t2, a2) = (MemoryStore::new(), MemoryAlertStore::new());
        let moved = import(&t2, &a2, &file, "import").await.unwrap();
        assert_eq!(
            (moved.ticks, moved.states, moved.outbox, moved.records),
            (1, 1, 1, 2)
        );
        let s = a2.records(RecordKind::Silence).await.unwrap();
        assert_eq!(
            (s[0].id.as_str(), s[0].version, s[0].json.as_str()),
            ("s1", 2, "{\"x\":2}")
        );
        let a = a2.records(RecordKind::Acknowledgement).await.unwrap();
        assert_eq!(a[0].keep_until, Millis::MAX);
        assert_eq!(t2.range(&host, 0, i64::MAX).await.unwrap().len(), 1);
        let snap = a2.load().await.unwrap();
        assert_eq!(snap.last_evaluated, Some(2_000));
        assert_eq!(snap.states, vec![("k".into(), "{\"open\":1}".into())]);
        assert_eq!(a2.outbox(10).await.unwrap()[0].seq, 2);
        assert_eq!(
            a2.lease().await.unwrap(),
            None,
            "the import's lease is released"
        );
        // Importing again stores no tick twice.
        assert_eq!(import(&t2, &a2, &file, "import").await.unwrap().ticks, 0);
        // An alerter holding the lease: refused.
        a2.acquire_lease("alerter", 1000).await.unwrap().unwrap();
        let err = import(&t2, &a2, &file, "import").await.unwrap_err();
        assert!(err.contains("stop every bp-alerter"), "{err}");

        let bad = format!(
            "{}\n{{\"record\":\"state\",\"key\":1}}\n",
            String::from_utf8(buf).unwrap().lines().next().unwrap()
        );
        let err = read(bad.as_bytes()).unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
        let err = read(&b"{\"host\":\"h\"}\n"[..]).unwrap_err();
        assert!(err.contains("line 1"), "{err}");
    }
}
