//! Memory inside a container: the cgroup memory limit the collector's own
//! process lives under, when there is one, so that `mem.usage` and
//! `mem.free` are against it (the specification's field table).
//!
//! Found once at start:
//! 1. `/proc/self/cgroup` names the process's cgroup: the `memory`
//!    controller's line on cgroup v1 (`4:memory:/docker/abc`), the `0::`
//!    line on v2 (`0::/system.slice/x.service`).
//! 2. `/proc/self/mountinfo` says where that hierarchy is mounted (type
//!    `cgroup` with the `memory` option, or `cgroup2`) and which cgroup is
//!    the mount's root; the process's directory is the mount point plus its
//!    cgroup path below that root. A v1 memory hierarchy, when mounted, is
//!    used (hybrid machines also mount a v2 tree without the memory
//!    controller).
//! 3. From that directory up to the mount point, the smallest limit wins
//!    (a limit on a parent slice applies to its children): v2 `memory.max`
//!    (`max`: none), v1 `memory.limit_in_bytes` (the kernel writes a huge
//!    number for none: anything at or above the machine's memory counts as
//!    none).
//!
//! Every tick then reads the usage of the cgroup holding the limit, as the
//! container runtimes report a working set: v2 `memory.current`, v1
//! `memory.usage_in_bytes`, less the inactive file cache (`inactive_file`,
//! v1 `total_inactive_file`, in `memory.stat`), which the kernel reclaims
//! before it kills anything.

use std::path::{Path, PathBuf};

use super::disks::under;
use super::procfs::parse_mountinfo;

/// Which cgroup version a limit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// cgroup v1 (`memory.limit_in_bytes`).
    V1,
    /// cgroup v2 (`memory.max`).
    V2,
}

/// The memory limit that applies to this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLimit {
    /// The cgroup directory holding the limit.
    pub dir: PathBuf,
    /// Its version.
    pub version: Version,
    /// The limit, bytes.
    pub limit_bytes: u64,
}

/// Finds the limit under `root` (`/` in production), for a machine with
/// `total_memory` bytes; `None` when none applies (or nothing is readable).
pub fn find_limit(root: &Path, total_memory: u64) -> Option<MemoryLimit> {
    let cgroup = std::fs::read_to_string(under(root, "/proc/self/cgroup")).ok()?;
    let mountinfo = std::fs::read_to_string(under(root, "/proc/self/mountinfo")).ok()?;
    let mounts = parse_mountinfo(&mountinfo);
    let mut v1_path = None;
    let mut v2_path = None;
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if controllers.split(',').any(|c| c == "memory") {
            v1_path = Some(path.to_owned());
        } else if id == "0" && controllers.is_empty() {
            v2_path = Some(path.to_owned());
        }
    }
    let v1_mount = mounts
        .iter()
        .find(|m| m.fs_type == "cgroup" && m.super_options.split(',').any(|o| o == "memory"));
    let (version, path, mount) = if let (Some(p), Some(m)) = (v1_path, v1_mount) {
        (Version::V1, p, m)
    } else {
        let m = mounts.iter().find(|m| m.fs_type == "cgroup2")?;
        (Version::V2, v2_path?, m)
    };
    let top = under(root, &mount.mount_point);
    // The process's cgroup below the mount's root; a path outside it (no
    // cgroup namespace, host path shown) falls back to the mount point.
    let below = Path::new(&path)
        .strip_prefix(&mount.root)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut dir = top.join(below);
    if !dir.is_dir() {
        dir.clone_from(&top);
    }
    let file = match version {
        Version::V1 => "memory.limit_in_bytes",
        Version::V2 => "memory.max",
    };
    let mut best: Option<MemoryLimit> = None;
    let mut at = Some(dir.as_path());
    while let Some(d) = at {
        if let Some(limit) = read_limit(&d.join(file))
            && limit < total_memory
            && best.as_ref().is_none_or(|b| limit < b.limit_bytes)
        {
            best = Some(MemoryLimit {
                dir: d.to_path_buf(),
                version,
                limit_bytes: limit,
            });
        }
        if d == top {
            break;
        }
        at = d.parent().filter(|p| p.starts_with(&top));
    }
    best
}

fn read_limit(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    if text == "max" {
        return None;
    }
    text.parse().ok().filter(|v| *v > 0)
}

impl MemoryLimit {
    /// The cgroup's working set now, bytes (usage less inactive file cache);
    /// `None` when its files cannot be read.
    pub fn used_bytes(&self) -> Option<u64> {
        let (usage_file, inactive_key) = match self.version {
            Version::V1 => ("memory.usage_in_bytes", "total_inactive_file"),
            Version::V2 => ("memory.current", "inactive_file"),
        };
        let usage: u64 = std::fs::read_to_string(self.dir.join(usage_file))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let stat = std::fs::read_to_string(self.dir.join("memory.stat")).unwrap_or_default();
        let inactive = stat
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == inactive_key).then(|| v.trim().parse::<u64>().ok())?
            })
            .unwrap_or(0);
        Some(usage.saturating_sub(inactive))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    struct Tree(tempfile::TempDir);

    impl Tree {
        fn new() -> Tree {
            Tree(tempfile::tempdir().unwrap())
        }
        fn root(&self) -> &Path {
            self.0.path()
        }
        fn write(&self, path: &str, text: &str) -> &Self {
            let p = under(self.root(), path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
            self
        }
    }

    #[test]
    fn v2_container_with_a_limit() {
        let t = Tree::new();
        t.write("/proc/self/cgroup", "0::/\n")
            .write(
                "/proc/self/mountinfo",
                "1 0 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            )
            .write("/sys/fs/cgroup/memory.max", "536870912\n")
            .write("/sys/fs/cgroup/memory.current", "300000000\n")
            .write(
                "/sys/fs/cgroup/memory.stat",
                "anon 1\nfile 2\ninactive_file 100000000\nactive_file 3\n",
            );
        let l = find_limit(t.root(), 16 * GIB).unwrap();
        assert_eq!((l.version, l.limit_bytes), (Version::V2, 536_870_912));
        assert_eq!(l.used_bytes(), Some(200_000_000));
    }

    #[test]
    fn v2_limit_on_a_parent_slice_and_max_means_none() {
        let t = Tree::new();
        t.write("/proc/self/cgroup", "0::/app.slice/bot.service\n")
            .write(
                "/proc/self/mountinfo",
                "1 0 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
            )
            .write("/sys/fs/cgroup/app.slice/memory.max", "1073741824\n")
            .write("/sys/fs/cgroup/app.slice/bot.service/memory.max", "max\n")
            .write("/sys/fs/cgroup/app.slice/memory.current", "10\n");
        let l = find_limit(t.root(), 16 * GIB).unwrap();
        assert_eq!(l.limit_bytes, GIB);
        assert!(l.dir.ends_with("app.slice"), "{l:?}");
        assert_eq!(l.used_bytes(), Some(10));
        t.write("/sys/fs/cgroup/app.slice/memory.max", "max\n");
        assert_eq!(find_limit(t.root(), 16 * GIB), None);
    }

    #[test]
    fn v1_limit_and_the_unlimited_sentinel() {
        let t = Tree::new();
        t.write(
            "/proc/self/cgroup",
            "9:name=systemd:/\n4:memory:/docker/abc\n0::/\n",
        )
        .write(
            "/proc/self/mountinfo",
            "31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
             35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
             41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
        )
        .write(
            "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes",
            "268435456\n",
        )
        .write(
            "/sys/fs/cgroup/memory/docker/abc/memory.usage_in_bytes",
            "200000000\n",
        )
        .write(
            "/sys/fs/cgroup/memory/docker/abc/memory.stat",
            "cache 5\ntotal_inactive_file 50000000\n",
        )
        .write(
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        let l = find_limit(t.root(), 16 * GIB).unwrap();
        assert_eq!((l.version, l.limit_bytes), (Version::V1, 268_435_456));
        assert_eq!(l.used_bytes(), Some(150_000_000));
        // the limit larger than the machine is no limit
        t.write(
            "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        assert_eq!(find_limit(t.root(), 16 * GIB), None);
    }

    #[test]
    fn v1_inside_a_cgroup_namespace_mounted_at_its_own_root() {
        // the container sees its cgroup as the mount's root
        let t = Tree::new();
        t.write("/proc/self/cgroup", "4:memory:/docker/abc\n")
            .write(
                "/proc/self/mountinfo",
                "35 31 0:32 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n",
            )
            .write("/sys/fs/cgroup/memory/memory.limit_in_bytes", "1048576\n")
            .write("/sys/fs/cgroup/memory/memory.usage_in_bytes", "4096\n");
        let l = find_limit(t.root(), 16 * GIB).unwrap();
        assert_eq!(l.limit_bytes, 1_048_576);
        assert_eq!(l.used_bytes(), Some(4096));
    }

    #[test]
    fn nothing_readable_is_no_limit() {
        let t = Tree::new();
        assert_eq!(find_limit(t.root(), 16 * GIB), None);
    }

    #[test]
    fn this_machine_has_no_limit_or_a_readable_one() {
        // cgroup-v1 hybrid without a limit here; a CI box with one must be
        // able to read its usage.
        if let Some(l) = find_limit(Path::new("/"), u64::MAX) {
            assert!(l.used_bytes().is_some(), "{l:?}");
        }
    }
}
