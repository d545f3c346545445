//! Which mounted filesystems and block devices the collector reports, and
//! the filesystem figures themselves (`statvfs(3)`, as `df` reads them).
//!
//! The default rules (docs/collector.md lists them; `monitoring.filesystems`
//! and `monitoring.blockDevices` include or exclude by name on top):
//! - a filesystem is *real* when its type is a network or pool filesystem
//!   ([`NETWORK_OR_POOL`]), or its source is a device node (`/dev/…`) and its
//!   type is not one of [`NEVER`] (read-only images: squashfs snaps, ISO
//!   9660 discs); pseudo filesystems (proc, sysfs, tmpfs, cgroup, devpts…)
//!   have no `/dev` source and are left out; `overlay` only as the root of a
//!   container (`/`), never the per-container mounts of a container host;
//! - one filesystem is reported once: of several mounts of one device
//!   (bind mounts, a container's `/etc/hosts`), the first directory mount in
//!   `mountinfo` order (the kernel's mount order: `/` before its binds);
//!   a mount point that is not a directory (a bind-mounted file) is skipped;
//! - a block device is *physical* when `/sys/block/<name>/device` exists
//!   (whole disks only: partitions are not in `/sys/block`; loop, ram, zram,
//!   device-mapper and md devices have no `device` link), so no byte is
//!   counted twice.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use metrics_model::config::Selection;

use super::procfs::Mount;

/// Filesystem types reported whatever their source.
pub const NETWORK_OR_POOL: [&str; 12] = [
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ceph",
    "glusterfs",
    "fuse.glusterfs",
    "fuse.sshfs",
    "zfs",
    "virtiofs",
    "9p",
];

/// Device-backed filesystem types never reported by default (always 100 %
/// full by construction).
pub const NEVER: [&str; 4] = ["squashfs", "iso9660", "udf", "erofs"];

/// Whether the default rule takes `m`.
pub fn real_filesystem(m: &Mount) -> bool {
    let t = m.fs_type.as_str();
    if NETWORK_OR_POOL.contains(&t) {
        return true;
    }
    if t == "overlay" {
        return m.mount_point == "/";
    }
    m.source.starts_with("/dev/") && !NEVER.contains(&t)
}

/// The mounts to report, in `mountinfo` order: the default rule and
/// `selection` (by mount point), one per device, directories only (checked
/// under `root`).
pub fn select_mounts<'a>(
    mounts: &'a [Mount],
    selection: &Selection,
    root: &Path,
) -> Vec<&'a Mount> {
    let mut devices = HashSet::new();
    let mut out = Vec::new();
    for m in mounts {
        if !selection.admits(&m.mount_point, real_filesystem(m)) {
            continue;
        }
        if devices.contains(m.device.as_str()) {
            continue;
        }
        if !under(root, &m.mount_point).is_dir() {
            continue;
        }
        devices.insert(m.device.as_str());
        out.push(m);
    }
    out
}

/// `path` (absolute) resolved under `root` (`/` in production, a fixture
/// tree in tests).
pub fn under(root: &Path, path: &str) -> std::path::PathBuf {
    root.join(path.trim_start_matches('/'))
}

/// A filesystem's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FsUsage {
    /// used / (used + available) × 100, as `df` (2 decimals).
    pub usage: f64,
    /// Available to unprivileged users, KB.
    pub free_kb: f64,
    /// % of inodes used; `None` when the filesystem reports no inode limit.
    pub inodes_usage: Option<f64>,
}

/// Reads `path` with `statvfs`; `None` when it fails or the filesystem has
/// no blocks.
pub fn fs_usage(path: &Path) -> Option<FsUsage> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    #[allow(clippy::useless_conversion)] // the field types differ between targets
    let (blocks, bfree, bavail, frsize, files, ffree) = (
        u64::from(s.blocks()),
        u64::from(s.blocks_free()),
        u64::from(s.blocks_available()),
        u64::from(s.fragment_size()),
        u64::from(s.files()),
        u64::from(s.files_free()),
    );
    if blocks == 0 {
        return None;
    }
    let used = blocks.saturating_sub(bfree);
    let denominator = used + bavail;
    let usage = if denominator == 0 {
        0.0
    } else {
        used as f64 / denominator as f64 * 100.0
    };
    let inodes_usage =
        (files > 0).then(|| files.saturating_sub(ffree) as f64 / files as f64 * 100.0);
    Some(FsUsage {
        usage: round2(usage),
        free_kb: round2(bavail as f64 * frsize as f64 / 1024.0),
        inodes_usage: inodes_usage.map(round2),
    })
}

fn round2(v: f64) -> f64 {
    crate::recorder::round_to(v, 2)
}

/// `statvfs` of network filesystems with a time limit: a hung NFS or CIFS
/// server makes the call block in the kernel for minutes, which would hold
/// back every tick. Each call on such a mount runs on its own thread; past
/// [`STATVFS_TIMEOUT`] the mount is reported as nothing this tick (logged
/// once) and skipped until that call returns — at most one call in flight
/// per mount, so a dead server costs one blocked thread, not one per tick.
#[derive(Debug, Default)]
pub struct BoundedStatvfs {
    pending: HashMap<PathBuf, mpsc::Receiver<Option<FsUsage>>>,
}

/// How long one `statvfs` of a network filesystem may take.
pub const STATVFS_TIMEOUT: Duration = Duration::from_millis(500);

impl BoundedStatvfs {
    /// `read(path)` on a thread, waiting at most `timeout`; `None` while a
    /// previous call on `path` has not returned.
    pub fn read(
        &mut self,
        path: &Path,
        timeout: Duration,
        read: impl FnOnce(&Path) -> Option<FsUsage> + Send + 'static,
    ) -> Option<FsUsage> {
        if let Some(rx) = self.pending.get(path) {
            match rx.try_recv() {
                // the hung call came back: its answer is stale, ask again
                Ok(_) | Err(mpsc::TryRecvError::Disconnected) => {
                    self.pending.remove(path);
                }
                Err(mpsc::TryRecvError::Empty) => return None,
            }
        }
        let (tx, rx) = mpsc::channel();
        let owned = path.to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("bp-statvfs".into())
            .spawn(move || {
                let _ = tx.send(read(&owned));
            });
        if spawned.is_err() {
            return None;
        }
        match rx.recv_timeout(timeout) {
            Ok(v) => v,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                tracing::warn!(
                    mount = %path.display(),
                    "statvfs did not answer within {timeout:?} (a hung network filesystem?): not reported until it does"
                );
                self.pending.insert(path.to_path_buf(), rx);
                None
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
        }
    }

    /// Mounts whose call has not returned.
    pub fn stuck(&self) -> usize {
        self.pending.len()
    }
}

/// Whether the default rule takes block device `name`: physical (a
/// `device` link under `root/sys/block/<name>`). Where `/sys/block` is not
/// readable at all, a name rule instead: no loop, ram, zram, dm-, md, sr,
/// fd device and no partition name.
pub fn physical_device(root: &Path, name: &str, sys_block_readable: bool) -> bool {
    if sys_block_readable {
        return under(root, "/sys/block").join(name).join("device").exists();
    }
    let virtual_prefix = ["loop", "ram", "zram", "dm-", "md", "sr", "fd", "nbd"];
    if virtual_prefix.iter().any(|p| name.starts_with(p)) {
        return false;
    }
    !is_partition_name(name)
}

/// `sda1`, `vdb2`, `xvda1`, `hda3`, `nvme0n1p2`, `mmcblk0p1`.
fn is_partition_name(name: &str) -> bool {
    let digits = name.bytes().rev().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return false;
    }
    let stem = &name[..name.len() - digits];
    if let Some(s) = stem.strip_suffix('p') {
        // nvme0n1p2, mmcblk0p1: the part before `p` ends in a digit
        return s.bytes().last().is_some_and(|b| b.is_ascii_digit());
    }
    ["sd", "vd", "xvd", "hd"]
        .iter()
        .any(|p| stem.starts_with(p) && stem[p.len()..].bytes().all(|b| b.is_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::super::procfs::parse_mountinfo;
    use super::*;

    #[test]
    fn default_rule() {
        let text = "\
22 1 254:0 / / rw - ext4 /dev/vda1 rw
23 22 0:21 / /proc rw - proc proc rw
24 22 0:22 / /dev/shm rw - tmpfs tmpfs rw
25 22 0:23 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
26 22 7:0 / /snap/core/1 ro - squashfs /dev/loop0 ro
27 22 0:40 / /var/lib/docker/overlay2/abc/merged rw - overlay overlay rw,lowerdir=x
28 22 0:41 / /mnt/nfs rw - nfs4 server:/export rw
29 22 254:0 /var/lib/x /srv/bind rw - ext4 /dev/vda1 rw
30 22 0:50 / /tank rw - zfs tank rw
31 22 259:1 / /boot/efi rw - vfat /dev/nvme0n1p1 rw
";
        let m = parse_mountinfo(text);
        let taken: Vec<&str> = m
            .iter()
            .filter(|m| real_filesystem(m))
            .map(|m| m.mount_point.as_str())
            .collect();
        assert_eq!(taken, ["/", "/mnt/nfs", "/srv/bind", "/tank", "/boot/efi"]);
        let overlay_root = parse_mountinfo("1 0 0:40 / / rw - overlay overlay rw");
        assert!(real_filesystem(&overlay_root[0]));
    }

    #[test]
    fn selection_and_one_mount_per_device() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for d in ["a", "b", "c", "shm"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::write(dir.join("file"), "").unwrap();
        let text = "\
1 0 8:1 / /a rw - ext4 /dev/sda1 rw
2 0 8:1 /sub /b rw - ext4 /dev/sda1 rw
3 0 8:2 / /c rw - ext4 /dev/sda2 rw
4 0 8:3 / /file rw - ext4 /dev/sda3 rw
5 0 0:5 / /shm rw - tmpfs tmpfs rw
";
        let m = parse_mountinfo(text);
        let names = |s: &Selection| -> Vec<String> {
            select_mounts(&m, s, dir)
                .iter()
                .map(|m| m.mount_point.clone())
                .collect()
        };
        assert_eq!(names(&Selection::default()), ["/a", "/c"]);
        let s = Selection {
            include: vec![metrics_model::glob::Glob::with_escapes("/shm")],
            exclude: vec![metrics_model::glob::Glob::with_escapes("/c")],
        };
        assert_eq!(names(&s), ["/a", "/shm"]);
    }

    #[test]
    fn partitions_by_name() {
        for p in ["sda1", "vdb2", "xvda1", "hda3", "nvme0n1p2", "mmcblk0p1"] {
            assert!(is_partition_name(p), "{p}");
            assert!(!physical_device(Path::new("/nonexistent"), p, false), "{p}");
        }
        for d in ["sda", "vdb", "nvme0n1", "mmcblk0", "xvda"] {
            assert!(!is_partition_name(d), "{d}");
            assert!(physical_device(Path::new("/nonexistent"), d, false), "{d}");
        }
        for v in ["loop0", "ram1", "zram0", "dm-0", "md127", "sr0"] {
            assert!(!physical_device(Path::new("/nonexistent"), v, false), "{v}");
        }
    }

    #[test]
    fn a_hung_statvfs_is_skipped_until_it_returns() {
        let mut b = BoundedStatvfs::default();
        let p = Path::new("/mnt/nfs");
        let answer = FsUsage {
            usage: 1.0,
            free_kb: 2.0,
            inodes_usage: None,
        };
        assert_eq!(
            b.read(p, Duration::from_secs(5), move |_| Some(answer)),
            Some(answer)
        );
        let (release, wait) = mpsc::channel::<()>();
        let t = std::time::Instant::now();
        assert_eq!(
            b.read(p, Duration::from_millis(50), move |_| {
                let _ = wait.recv();
                Some(answer)
            }),
            None
        );
        assert!(t.elapsed() < Duration::from_secs(2));
        assert_eq!(b.stuck(), 1);
        // still hung: no second call, no wait
        let t = std::time::Instant::now();
        assert_eq!(
            b.read(p, Duration::from_secs(5), |_| panic!("not called")),
            None
        );
        assert!(t.elapsed() < Duration::from_millis(100));
        // it returns: the next reading asks again
        release.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            b.read(p, Duration::from_secs(5), move |_| Some(answer)),
            Some(answer)
        );
        assert_eq!(b.stuck(), 0);
    }

    #[test]
    fn root_usage_like_df() {
        let u = fs_usage(Path::new("/")).unwrap();
        assert!((0.0..=100.0).contains(&u.usage), "{u:?}");
        assert!(u.free_kb >= 0.0);
    }
}
