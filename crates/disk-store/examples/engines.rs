//! redb against SQLite for standalone mode's on-disk store, on this machine,
//! with the same ticks and the same value encoding (`metrics_model::codec`):
//! 10 days of 10 s ticks of one node (86,400 ticks × 10 fields, realistic
//! values from `metrics_model::synthetic`).
//!
//! For each engine:
//! - bulk load, 1,000 ticks per transaction (an import; a collector
//!   catching up): ticks/s;
//! - live appends, one tick per durable transaction (what standalone does
//!   every collection interval): commits/s, over 1,000 commits;
//! - bytes per sample on disk after the load (file size, WAL checkpointed);
//! - one node-day range read (8,640 ticks, decoded): ms, best and median of
//!   20.
//!
//! Engines: `redb` with a (host, ts) → values table; SQLite (rusqlite,
//! bundled library) with `ticks(host TEXT, ts INTEGER, v BLOB, PRIMARY
//! KEY(host, ts)) WITHOUT ROWID`, WAL journal, `synchronous=FULL`; and the
//! product's `DiskStore` (redb plus the host registry and the arrival index,
//! measured with the index cut as a running alerter's janitor keeps it: the
//! last hour only).
//!
//! `cargo run --release -p disk-store --example engines`

use std::path::Path;
use std::time::{Duration, Instant};

use metrics_model::store::TickStore;
use metrics_model::synthetic::node_ticks;
use metrics_model::{HostName, Tick, codec};
use redb::{Database, Durability, ReadableDatabase, TableDefinition};

const TICKS: i64 = 86_400;
const DAY: usize = 8_640;
const STEP: i64 = 10_000;
const START: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const LIVE: usize = 1_000;

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const TABLE: TableDefinition<(&str, i64), &[u8]> = TableDefinition::new("ticks");

struct Row {
    engine: &'static str,
    load_per_s: f64,
    live_per_s: f64,
    bytes_per_sample: f64,
    read_best_ms: f64,
    read_median_ms: f64,
}

fn encode(t: &Tick) -> Vec<u8> {
    let mut v = Vec::new();
    codec::encode(t.values(), &mut v);
    v
}

fn samples(ticks: &[Tick]) -> usize {
    ticks.iter().map(|t| t.values().len()).sum()
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter_map(Result::ok)
            .filter_map(|e| e.metadata().ok())
            .filter(std::fs::Metadata::is_file)
            .map(|m| m.len())
            .sum()
    })
}

fn time_reads(mut read: impl FnMut() -> Res<usize>) -> Res<(f64, f64)> {
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let n = read()?;
        times.push(t.elapsed());
        assert_eq!(n, DAY, "a day is {DAY} ticks");
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok((ms(times[0]), ms(times[times.len() / 2])))
}

fn redb_row(dir: &Path, ticks: &[Tick], live: &[Tick]) -> Res<Row> {
    let path = dir.join("ticks.redb");
    let db = Database::create(&path)?;
    let started = Instant::now();
    for chunk in ticks.chunks(1000) {
        let txn = db.begin_write()?;
        {
            let mut t = txn.open_table(TABLE)?;
            for tick in chunk {
                t.insert((tick.host.as_str(), tick.ts), encode(tick).as_slice())?;
            }
        }
        txn.commit()?;
    }
    let load = ticks.len() as f64 / started.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&path)?.len();
    let started = Instant::now();
    for tick in live {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut t = txn.open_table(TABLE)?;
            t.insert((tick.host.as_str(), tick.ts), encode(tick).as_slice())?;
        }
        txn.commit()?;
    }
    let live_rate = live.len() as f64 / started.elapsed().as_secs_f64();
    let host = ticks[0].host.as_str().to_owned();
    let from = START + 3 * DAY as i64 * STEP;
    let to = from + DAY as i64 * STEP - 1;
    let (best, median) = time_reads(|| {
        let txn = db.begin_read()?;
        let t = txn.open_table(TABLE)?;
        let mut n = 0;
        for item in t.range((host.as_str(), from)..=(host.as_str(), to))? {
            let (_, v) = item?;
            codec::decode(v.value())?;
            n += 1;
        }
        Ok(n)
    })?;
    Ok(Row {
        engine: "redb 4 (ticks table)",
        load_per_s: load,
        live_per_s: live_rate,
        bytes_per_sample: bytes as f64 / samples(ticks) as f64,
        read_best_ms: best,
        read_median_ms: median,
    })
}

fn sqlite_row(dir: &Path, ticks: &[Tick], live: &[Tick]) -> Res<Row> {
    let path = dir.join("ticks.sqlite");
    let mut conn = rusqlite::Connection::open(&path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE ticks (host TEXT NOT NULL, ts INTEGER NOT NULL, v BLOB NOT NULL,
         PRIMARY KEY (host, ts)) WITHOUT ROWID;",
    )?;
    let started = Instant::now();
    for chunk in ticks.chunks(1000) {
        let txn = conn.transaction()?;
        {
            let mut stmt = txn
                .prepare_cached("INSERT OR IGNORE INTO ticks (host, ts, v) VALUES (?1, ?2, ?3)")?;
            for tick in chunk {
                stmt.execute(rusqlite::params![tick.host.as_str(), tick.ts, encode(tick)])?;
            }
        }
        txn.commit()?;
    }
    let load = ticks.len() as f64 / started.elapsed().as_secs_f64();
    conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
    let bytes = dir_size(dir);
    let started = Instant::now();
    for tick in live {
        let txn = conn.transaction()?;
        txn.execute(
            "INSERT OR IGNORE INTO ticks (host, ts, v) VALUES (?1, ?2, ?3)",
            rusqlite::params![tick.host.as_str(), tick.ts, encode(tick)],
        )?;
        txn.commit()?;
    }
    let live_rate = live.len() as f64 / started.elapsed().as_secs_f64();
    let host = ticks[0].host.as_str().to_owned();
    let from = START + 3 * DAY as i64 * STEP;
    let to = from + DAY as i64 * STEP - 1;
    let (best, median) = time_reads(|| {
        let mut stmt = conn.prepare_cached(
            "SELECT v FROM ticks WHERE host = ?1 AND ts BETWEEN ?2 AND ?3 ORDER BY ts",
        )?;
        let mut rows = stmt.query(rusqlite::params![host, from, to])?;
        let mut n = 0;
        while let Some(row) = rows.next()? {
            let v: Vec<u8> = row.get(0)?;
            codec::decode(&v)?;
            n += 1;
        }
        Ok(n)
    })?;
    Ok(Row {
        engine: "SQLite 3 (WAL, FULL)",
        load_per_s: load,
        live_per_s: live_rate,
        bytes_per_sample: bytes as f64 / samples(ticks) as f64,
        read_best_ms: best,
        read_median_ms: median,
    })
}

fn disk_store_row(dir: &Path, ticks: &[Tick], live: &[Tick]) -> Res<Row> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let data = dir.join("data");
    let store = disk_store::DiskStore::open(&data)?;
    let started = Instant::now();
    for chunk in ticks.chunks(1000) {
        rt.block_on(store.append(chunk))?;
    }
    let load = ticks.len() as f64 / started.elapsed().as_secs_f64();
    let with_index = std::fs::metadata(store.path())?.len();
    // Steady state: a running alerter's janitor keeps only the last hour of
    // the arrival index (360 entries at 10 s); this run appended everything
    // within seconds, so drop it all and compact, as an import does.
    rt.block_on(store.drop_arrival_index())?;
    let bytes = std::fs::metadata(store.path())?.len();
    eprintln!(
        "DiskStore: {:.2} B/sample with an arrival entry per tick, {:.2} without",
        with_index as f64 / samples(ticks) as f64,
        bytes as f64 / samples(ticks) as f64
    );
    let started = Instant::now();
    for tick in live {
        rt.block_on(store.append(std::slice::from_ref(tick)))?;
    }
    let live_rate = live.len() as f64 / started.elapsed().as_secs_f64();
    let host: HostName = ticks[0].host.clone();
    let from = START + 3 * DAY as i64 * STEP;
    let to = from + DAY as i64 * STEP - 1;
    let (best, median) = time_reads(|| Ok(rt.block_on(store.range(&host, from, to))?.len()))?;
    Ok(Row {
        engine: "DiskStore (redb + indexes)",
        load_per_s: load,
        live_per_s: live_rate,
        bytes_per_sample: bytes as f64 / samples(ticks) as f64,
        read_best_ms: best,
        read_median_ms: median,
    })
}

fn main() -> Res<()> {
    let host: HostName = "node-1".parse()?;
    let ticks = node_ticks(&host, START, STEP, TICKS, 7);
    let live = node_ticks(&host, START + TICKS * STEP, STEP, LIVE as i64, 8);
    println!(
        "# {} ticks, {} samples ({:.1} fields per tick); live: {LIVE} single-tick durable commits",
        ticks.len(),
        samples(&ticks),
        samples(&ticks) as f64 / ticks.len() as f64
    );
    let mut rows = Vec::new();
    for which in ["redb", "sqlite", "disk-store"] {
        // On the disk the product uses (not a tmpfs): under target/.
        let base = std::env::var_os("BP_BENCH_DIR").map_or_else(
            || std::env::current_dir().unwrap_or_default().join("target"),
            std::path::PathBuf::from,
        );
        std::fs::create_dir_all(&base)?;
        let dir = tempfile::Builder::new()
            .prefix("engines-")
            .tempdir_in(&base)?;
        let row = match which {
            "redb" => redb_row(dir.path(), &ticks, &live)?,
            "sqlite" => sqlite_row(dir.path(), &ticks, &live)?,
            _ => disk_store_row(dir.path(), &ticks, &live)?,
        };
        eprintln!("{which} done");
        rows.push(row);
    }
    println!(
        "| engine | bulk load, ticks/s | live durable appends, commits/s | bytes per sample on disk | one node-day read, best / median ms |"
    );
    println!("|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.1} / {:.1} |",
            r.engine,
            r.load_per_s,
            r.live_per_s,
            r.bytes_per_sample,
            r.read_best_ms,
            r.read_median_ms
        );
    }
    Ok(())
}
