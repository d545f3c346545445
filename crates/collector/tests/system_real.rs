//! The system sampler against the real machine (tolerant where the machine
//! moves) and against fixture trees (`/proc/self/mountinfo`,
//! `/proc/diskstats`, `/proc/net/dev`, `/sys/block`): the figures of issue
//! 14's "Done when".
//!
//! The tests of this file run one at a time (a lock), so the loopback byte
//! count of one is not disturbed by another.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use collector::system::{SystemOptions, SystemReading, SystemSampler};
use metrics_model::config::{ProcessMatch, Selection, WatchedProcess};
use metrics_model::glob::Glob;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Waits until `pid`'s command line starts with `prefix` (its `exec` done).
fn wait_for_exec(pid: u32, prefix: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .starts_with(prefix)
    {
        assert!(Instant::now() < deadline, "{pid} never became {prefix}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn get(r: &SystemReading, key: &str) -> Option<f64> {
    r.values()
        .find(|(k, _)| k.to_string() == key)
        .map(|(_, v)| v)
}

fn keys(r: &SystemReading) -> Vec<String> {
    r.values().map(|(k, _)| k.to_string()).collect()
}

#[test]
fn root_disk_usage_agrees_with_df() {
    let _g = one_at_a_time();
    let mut s = SystemSampler::new().unwrap();
    // the root filesystem moves while other tests write: compare to df right
    // before and after, and take the closer
    let before = test_support::df_used_percent("/");
    let r = s.sample();
    let after = test_support::df_used_percent("/");
    let ours =
        get(&r, "disk.usage[/]").unwrap_or_else(|| panic!("no disk.usage[/] in {:?}", keys(&r)));
    let diff = (ours - before).abs().min((ours - after).abs());
    assert!(
        diff <= 0.5,
        "disk.usage[/] = {ours}, df says {before} .. {after}"
    );
    let free = get(&r, "disk.free[/]").unwrap();
    assert!(free > 0.0, "disk.free[/] = {free}");
    if let Some(i) = get(&r, "disk.inodes.usage[/]") {
        assert!((0.0..=100.0).contains(&i), "{i}");
    }
}

#[test]
fn load_agrees_with_proc_loadavg() {
    let _g = one_at_a_time();
    let mut s = SystemSampler::new().unwrap();
    let read = || -> Vec<f64> {
        std::fs::read_to_string("/proc/loadavg")
            .unwrap()
            .split_whitespace()
            .take(3)
            .map(|v| v.parse().unwrap())
            .collect()
    };
    let before = read();
    let r = s.sample();
    let after = read();
    for (i, key) in ["load.1", "load.5", "load.15"].into_iter().enumerate() {
        let ours = get(&r, key).unwrap();
        let (lo, hi) = (before[i].min(after[i]), before[i].max(after[i]));
        // /proc/loadavg has 2 decimals and is updated every 5 s
        assert!(
            ours >= lo - 0.011 && ours <= hi + 0.011,
            "{key} = {ours}, /proc/loadavg said {} then {}",
            before[i],
            after[i]
        );
    }
}

#[test]
#[allow(clippy::many_single_char_names)] // r(eading), s(ampler), c(onnection)
fn loopback_bytes_through_the_include_option() {
    const BYTES: usize = 8 << 20;
    let _g = one_at_a_time();
    // by default the loopback interface is left out
    let mut plain = SystemSampler::new().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let r = plain.sample();
    assert!(get(&r, "net.rx[lo]").is_none(), "{:?}", keys(&r));
    drop(plain);

    let mut s = SystemSampler::with_options(SystemOptions {
        interfaces: Selection {
            include: vec![Glob::with_escapes("lo")],
            exclude: vec![],
        },
        ..SystemOptions::default()
    })
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let reader = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut n = 0;
        while n < BYTES {
            let k = c.read(&mut buf).unwrap();
            assert!(k > 0);
            n += k;
        }
        n
    });
    let mut c = TcpStream::connect(addr).unwrap();
    // a baseline sample after the connection is up, then the payload
    let t0 = Instant::now();
    let _ = s.sample();
    let chunk = vec![7u8; 1 << 16];
    for _ in 0..BYTES / chunk.len() {
        c.write_all(&chunk).unwrap();
    }
    assert_eq!(reader.join().unwrap(), BYTES);
    std::thread::sleep(Duration::from_millis(20));
    let t1 = Instant::now();
    let r = s.sample();
    let elapsed = t1.duration_since(t0).as_secs_f64();
    let rx = get(&r, "net.rx[lo]").unwrap_or_else(|| panic!("no net.rx[lo] in {:?}", keys(&r)));
    let tx = get(&r, "net.tx[lo]").unwrap();
    let seen = rx * elapsed;
    let tolerance = (BYTES as f64 * 0.05).max(4096.0);
    assert!(
        (seen - BYTES as f64).abs() <= tolerance,
        "net.rx[lo] = {rx} B/s over {elapsed:.3} s = {seen:.0} B, sent {BYTES} B"
    );
    // on loopback every byte sent is received
    assert!((tx * elapsed - seen).abs() <= tolerance, "rx {rx} tx {tx}");
    assert_eq!(get(&r, "net.errors.count[lo]"), Some(0.0));
}

#[test]
fn a_watched_sleep_is_counted_then_not() {
    let _g = one_at_a_time();
    // a command line no other process has
    let arg = format!("86399.{}", std::process::id());
    let watched = |name: &str, m: ProcessMatch| WatchedProcess {
        name: name.parse().unwrap(),
        matcher: m,
    };
    let mut s = SystemSampler::with_options(SystemOptions {
        processes: vec![
            watched(
                "napper",
                ProcessMatch::Cmdline(Glob::with_escapes(&format!("sleep {arg}"))),
            ),
            watched(
                "ghost",
                ProcessMatch::Comm(Glob::with_escapes("no-such-process-*")),
            ),
            watched("by-exe", ProcessMatch::Exe(Glob::with_escapes("*/sleep"))),
        ],
        ..SystemOptions::default()
    })
    .unwrap();
    let r = s.sample();
    assert_eq!(
        get(&r, "process.count[napper]"),
        Some(0.0),
        "{:?}",
        keys(&r)
    );
    assert_eq!(get(&r, "process.count[ghost]"), Some(0.0));
    assert_eq!(get(&r, "process.mem[ghost]"), Some(0.0));
    let mut child = Command::new("sleep").arg(&arg).spawn().unwrap();
    wait_for_exec(child.id(), "sleep");
    let r = s.sample();
    assert_eq!(
        get(&r, "process.count[napper]"),
        Some(1.0),
        "{:?}",
        keys(&r)
    );
    let mem = get(&r, "process.mem[napper]").unwrap();
    assert!(
        mem > 0.0 && mem < 1_048_576.0,
        "process.mem[napper] = {mem} KB"
    );
    let cpu = get(&r, "process.cpu[napper]").unwrap();
    assert!((0.0..=100.0).contains(&cpu), "{cpu}");
    assert!(get(&r, "process.count[by-exe]").unwrap() >= 1.0);
    child.kill().unwrap();
    child.wait().unwrap();
    let r = s.sample();
    assert_eq!(
        get(&r, "process.count[napper]"),
        Some(0.0),
        "{:?}",
        keys(&r)
    );
    assert_eq!(get(&r, "process.mem[napper]"), Some(0.0));
}

#[test]
fn a_busy_watched_process_has_its_cpu_share() {
    let _g = one_at_a_time();
    let arg = format!("bp-busy-{}", std::process::id());
    let mut s = SystemSampler::with_options(SystemOptions {
        processes: vec![WatchedProcess {
            name: "spinner".parse().unwrap(),
            matcher: ProcessMatch::Cmdline(Glob::with_escapes(&format!("sh -c * {arg}"))),
        }],
        ..SystemOptions::default()
    })
    .unwrap();
    // one core busy for a second: 100 / number of CPUs, all cores together
    let mut child = Command::new("sh")
        .args(["-c", "while :; do :; done # $0", &arg])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let _ = s.sample();
    std::thread::sleep(Duration::from_secs(1));
    let r = s.sample();
    child.kill().unwrap();
    child.wait().unwrap();
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as f64;
    let cpu = get(&r, "process.cpu[spinner]").unwrap_or_else(|| panic!("{:?}", keys(&r)));
    // the machine may be loaded by other test binaries: at least a third of a core
    assert!(
        cpu >= 100.0 / cpus / 3.0 && cpu <= 100.0 / cpus + 5.0,
        "process.cpu[spinner] = {cpu} with {cpus} CPUs"
    );
}

/// A fixture root: `proc/self/mountinfo` with mounts on real directories
/// of distinct (made-up) devices, `proc/diskstats`, `proc/net/dev`,
/// `sys/block`.
struct Fixture(tempfile::TempDir);

impl Fixture {
    fn new() -> Fixture {
        Fixture(tempfile::tempdir().unwrap())
    }
    fn write(&self, path: &str, text: &str) {
        let p = self.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    fn dir(&self, path: &str) {
        std::fs::create_dir_all(self.path().join(path)).unwrap();
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
}

fn net_dev(rows: &[(&str, u64, u64, u64, u64)]) -> String {
    let mut s = String::from(
        "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n",
    );
    for (name, rx, rxe, tx, txe) in rows {
        let _ = writeln!(
            s,
            "{name:>6}: {rx} 10 {rxe} 0 0 0 0 0 {tx} 10 {txe} 0 0 0 0 0"
        );
    }
    s
}

#[test]
#[allow(clippy::too_many_lines)] // one fixture, every rule checked against it
fn fixture_ten_mounts_four_interfaces_devices_and_rates() {
    let _g = one_at_a_time();
    let f = Fixture::new();
    let mut mountinfo = String::new();
    for i in 0..10 {
        f.dir(&format!("mnt/d{i}"));
        let _ = writeln!(
            mountinfo,
            "{} 1 8:{} / /mnt/d{i} rw - ext4 /dev/sd{}1 rw",
            100 + i,
            16 * i,
            char::from(b'a' + i as u8)
        );
    }
    mountinfo.push_str("200 1 0:5 / /proc rw - proc proc rw\n");
    mountinfo.push_str("201 1 0:6 / /mnt/d0/tmp rw - tmpfs tmpfs rw\n");
    mountinfo.push_str("202 1 8:0 /x /mnt/d1/bind rw - ext4 /dev/sda1 rw\n");
    mountinfo.push_str("203 1 0:7 / /mnt/space\\040dir rw - ext4 /dev/sdk rw\n");
    f.dir("mnt/d0/tmp");
    f.dir("mnt/d1/bind");
    f.dir("mnt/space dir");
    f.write("proc/self/mountinfo", &mountinfo);
    // sda and nvme0n1 are physical, loop0 is not; sda1 is a partition (not in /sys/block)
    f.dir("sys/block/sda/device");
    f.dir("sys/block/nvme0n1/device");
    f.dir("sys/block/loop0");
    let diskstats = |r: u64, w: u64| {
        format!(
            "   8 0 sda 1 0 {r} 0 1 0 {w} 0 0 0 0\n   8 1 sda1 1 0 {r} 0 1 0 {w} 0 0 0 0\n 259 0 nvme0n1 1 0 {r} 0 1 0 {w} 0 0 0 0\n   7 0 loop0 1 0 {r} 0 1 0 {w} 0 0 0 0\n"
        )
    };
    f.write("proc/diskstats", &diskstats(1000, 2000));
    f.write(
        "proc/net/dev",
        &net_dev(&[
            ("lo", 5, 0, 5, 0),
            ("eth0", 1_000, 1, 2_000, 0),
            ("eth1", 0, 0, 0, 0),
            ("wlan0", 4_294_967_000, 0, 10, 0),
            ("docker0", 100, 0, 100, 0),
        ]),
    );
    let mut s = SystemSampler::with_options(SystemOptions {
        root: f.path().to_path_buf(),
        filesystems: Selection {
            include: vec![],
            exclude: vec![Glob::with_escapes("/mnt/d9")],
        },
        ..SystemOptions::default()
    })
    .unwrap();
    let t0 = Instant::now();
    // 4 more interfaces' worth of counters and disk traffic
    f.write(
        "proc/diskstats",
        &diskstats(1000 + 2 * 2048, 2000 + 4 * 2048),
    );
    f.write(
        "proc/net/dev",
        &net_dev(&[
            ("lo", 50, 0, 50, 0),
            ("eth0", 1_000 + 10_000, 4, 2_000 + 20_000, 2),
            ("eth1", 0, 0, 0, 0),
            // a 32-bit counter wrapping: 296 + 1000 bytes
            ("wlan0", 1_000, 0, 10, 0),
            // re-created: counters went down
            ("docker0", 7, 0, 7, 0),
        ]),
    );
    std::thread::sleep(Duration::from_millis(100));
    let r = s.sample();
    let elapsed = t0.elapsed().as_secs_f64();
    let ks = keys(&r);
    let mounts: Vec<&str> = ks
        .iter()
        .filter_map(|k| k.strip_prefix("disk.usage[")?.strip_suffix(']'))
        .collect();
    assert_eq!(
        mounts,
        [
            "/mnt/d0",
            "/mnt/d1",
            "/mnt/d2",
            "/mnt/d3",
            "/mnt/d4",
            "/mnt/d5",
            "/mnt/d6",
            "/mnt/d7",
            "/mnt/d8",
            "/mnt/space dir"
        ],
        "{ks:?}"
    );
    // the fixture's directories are on the real filesystem under the temp dir
    let usage = get(&r, "disk.usage[/mnt/d3]").unwrap();
    assert!((0.0..=100.0).contains(&usage));
    // devices: sda and nvme0n1 only, bytes per second over the real elapsed time
    let devices: Vec<&str> = ks
        .iter()
        .filter_map(|k| k.strip_prefix("io.read[")?.strip_suffix(']'))
        .collect();
    assert_eq!(devices, ["sda", "nvme0n1"], "in /proc/diskstats order");
    let read = get(&r, "io.read[sda]").unwrap();
    let expected = 2.0 * 2048.0 * 512.0 / elapsed;
    // the sampler's elapsed time and ours differ by a few microseconds
    let near = |v: f64, want: f64| v >= want * 0.8 && v <= want * 1.25;
    assert!(near(read, expected), "{read} vs {expected}");
    let write = get(&r, "io.write[nvme0n1]").unwrap();
    assert!((write / read - 2.0).abs() < 1e-9, "{write} {read}");
    // interfaces: no loopback; eth0's rates and errors; the wrap counted; the reset skipped
    let rx0 = get(&r, "net.rx[eth0]").unwrap();
    assert!(near(rx0, 10_000.0 / elapsed), "{rx0}");
    assert_eq!(get(&r, "net.errors.count[eth0]"), Some(5.0));
    assert_eq!(get(&r, "net.rx[eth1]"), Some(0.0));
    let wrap = get(&r, "net.rx[wlan0]").unwrap() * elapsed;
    assert!(near(wrap, 1296.0), "{wrap}");
    assert!(get(&r, "net.rx[docker0]").is_none(), "{ks:?}");
    assert!(get(&r, "net.rx[lo]").is_none());
    // the next reading counts docker0 from its new base
    f.write("proc/net/dev", &net_dev(&[("docker0", 107, 0, 7, 0)]));
    let r = s.sample();
    assert!(get(&r, "net.rx[docker0]").unwrap() > 0.0);
    assert!(get(&r, "net.rx[eth0]").is_none(), "unplugged");
    for (k, v) in r.values() {
        assert!(v.is_finite() && v >= 0.0, "{k} = {v}");
    }
}

#[test]
fn a_mount_point_that_cannot_be_an_instance_is_skipped_and_nfs_is_read() {
    let _g = one_at_a_time();
    let f = Fixture::new();
    f.dir("mnt/ok");
    f.dir("mnt/a]b");
    f.dir("mnt/nfs");
    f.write(
        "proc/self/mountinfo",
        "1 0 8:1 / /mnt/ok rw - ext4 /dev/sda1 rw\n2 0 8:2 / /mnt/a]b rw - ext4 /dev/sda2 rw\n\
         3 0 0:60 / /mnt/nfs rw - nfs4 server:/export rw\n",
    );
    let mut s = SystemSampler::with_options(SystemOptions {
        root: f.path().to_path_buf(),
        ..SystemOptions::default()
    })
    .unwrap();
    let r = s.sample();
    let ks = keys(&r);
    assert!(ks.iter().any(|k| k == "disk.usage[/mnt/ok]"), "{ks:?}");
    // a network filesystem, read on its own thread with a time limit
    assert!(ks.iter().any(|k| k == "disk.usage[/mnt/nfs]"), "{ks:?}");
    assert!(!ks.iter().any(|k| k.contains("a]b")), "{ks:?}");
}

#[test]
fn a_process_that_execs_into_a_watched_command_line_is_recognised_within_the_recheck() {
    let _g = one_at_a_time();
    let arg = format!("86397.{}", std::process::id());
    let mut s = SystemSampler::with_options(SystemOptions {
        processes: vec![WatchedProcess {
            name: "late".parse().unwrap(),
            matcher: ProcessMatch::Cmdline(Glob::with_escapes(&format!("sleep {arg}"))),
        }],
        ..SystemOptions::default()
    })
    .unwrap();
    // a shell first (seen, matching nothing), which then becomes `sleep` by exec
    let mut child = Command::new("sh")
        .args(["-c", &format!("read x; exec sleep {arg}")])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..3 {
        assert_eq!(get(&s.sample(), "process.count[late]"), Some(0.0));
    }
    writeln!(child.stdin.take().unwrap(), "go").unwrap();
    wait_for_exec(child.id(), "sleep");
    let ticks = (1..=collector::system::processes::RECHECK_TICKS + 1)
        .find(|_| get(&s.sample(), "process.count[late]") == Some(1.0));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        ticks.is_some(),
        "not recognised within {} ticks",
        collector::system::processes::RECHECK_TICKS + 1
    );
    // and the end of a matched process is seen at the next tick
    assert_eq!(get(&s.sample(), "process.count[late]"), Some(0.0));
}

/// Runs in a private mount namespace (`unshare --mount --map-root-user`, a
/// child process of this test binary), where it may mount a tmpfs: the
/// sampler sees a new mount at the next tick and a removed one disappear
/// (the mount table is re-read when `poll` says it changed).
#[test]
fn a_new_mount_is_seen_at_the_next_tick_and_a_removed_one_goes() {
    const MARK: &str = "BP_IN_MOUNT_NAMESPACE";
    let Some(dir) = std::env::var_os(MARK) else {
        let dir = Fixture::new();
        let out = Command::new("unshare")
            .args(["--mount", "--map-root-user", "--propagation", "private"])
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_new_mount_is_seen_at_the_next_tick_and_a_removed_one_goes",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(MARK, dir.path())
            .output()
            .expect("unshare (util-linux) runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.contains("1 passed"),
            "in a private mount namespace:\n{text}"
        );
        return;
    };
    let mount_point = PathBuf::from(dir).join("m");
    std::fs::create_dir_all(&mount_point).unwrap();
    let mp = mount_point.to_str().unwrap().to_owned();
    let mut s = SystemSampler::with_options(SystemOptions {
        filesystems: Selection {
            include: vec![Glob::with_escapes(&mp)],
            exclude: vec![],
        },
        ..SystemOptions::default()
    })
    .unwrap();
    let key = format!("disk.usage[{mp}]");
    assert!(get(&s.sample(), &key).is_none());
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs", &mp])
        .status()
        .unwrap();
    assert!(mounted.success());
    let r = s.sample();
    assert_eq!(get(&r, &key), Some(0.0), "{:?}", keys(&r));
    assert_eq!(get(&r, &format!("disk.free[{mp}]")), Some(1024.0));
    assert!(Command::new("umount").arg(&mp).status().unwrap().success());
    assert!(get(&s.sample(), &key).is_none());
}
