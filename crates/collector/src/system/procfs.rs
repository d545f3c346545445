//! Parsers of the `/proc` files sysinfo has no answer for: `self/mountinfo`
//! (filesystems with their device numbers and types), `diskstats` (block
//! device counters) and `net/dev` (interface counters). Pure functions over
//! the text, so fixtures test them; a malformed line is skipped, never a
//! panic.

/// One line of `/proc/self/mountinfo` (proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` of the filesystem's device (field 3).
    pub device: String,
    /// The root of the mount within the filesystem (field 4).
    pub root: String,
    /// The mount point (field 5), octal escapes (`\040`) decoded.
    pub mount_point: String,
    /// The filesystem type (first field after ` - `).
    pub fs_type: String,
    /// The mount source (second field after ` - `), escapes decoded.
    pub source: String,
    /// The super options (third field after ` - `).
    pub super_options: String,
}

/// Every well-formed line of a `mountinfo` text, in order.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_mount_line).collect()
}

fn parse_mount_line(line: &str) -> Option<Mount> {
    let (head, tail) = line.split_once(" - ")?;
    let mut h = head.split(' ');
    let _id = h.next()?;
    let _parent = h.next()?;
    let device = h.next()?;
    let root = h.next()?;
    let mount_point = h.next()?;
    let mut t = tail.split(' ');
    let fs_type = t.next()?;
    let source = t.next()?;
    let super_options = t.next().unwrap_or("");
    if !device.contains(':') || !mount_point.starts_with('/') {
        return None;
    }
    Some(Mount {
        device: device.to_owned(),
        root: unescape(root),
        mount_point: unescape(mount_point),
        fs_type: fs_type.to_owned(),
        source: unescape(source),
        super_options: super_options.to_owned(),
    })
}

/// Decodes the kernel's octal escapes (`\040` space, `\011` tab, `\012`
/// newline, `\134` backslash); anything else is kept as written.
pub fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            if let Ok(v) = u8::try_from(v) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One device's counters from `/proc/diskstats` (bytes: sectors × 512,
/// the kernel's fixed unit there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskCounters {
    /// The device name (`sda`, `nvme0n1`, `vda`).
    pub name: String,
    /// Bytes read since boot.
    pub read_bytes: u64,
    /// Bytes written since boot.
    pub written_bytes: u64,
}

/// Every well-formed line of a `diskstats` text.
pub fn parse_diskstats(text: &str) -> Vec<DiskCounters> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_ascii_whitespace();
            let _major = f.next()?;
            let _minor = f.next()?;
            let name = f.next()?;
            let nums: Vec<u64> = f.take(7).map(str::parse).collect::<Result<_, _>>().ok()?;
            if nums.len() < 7 {
                return None;
            }
            Some(DiskCounters {
                name: name.to_owned(),
                read_bytes: nums[2].wrapping_mul(512),
                written_bytes: nums[6].wrapping_mul(512),
            })
        })
        .collect()
}

/// One interface's counters from `/proc/net/dev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetCounters {
    /// The interface name.
    pub name: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Receive errors plus transmit errors.
    pub errors: u64,
}

/// Every well-formed interface line of a `net/dev` text (the two header
/// lines have no `:` before numbers and are skipped).
pub fn parse_net_dev(text: &str) -> Vec<NetCounters> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let name = name.trim();
            let nums: Vec<u64> = rest
                .split_ascii_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .ok()?;
            if name.is_empty() || nums.len() < 11 {
                return None;
            }
            Some(NetCounters {
                name: name.to_owned(),
                rx_bytes: nums[0],
                tx_bytes: nums[8],
                errors: nums[2].saturating_add(nums[10]),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines() {
        let text = "\
36 35 98:0 /mnt1 /mnt/parent\\040dir rw,noatime master:1 - ext3 /dev/root rw,errors=continue
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
garbage line
23 22 0:21 / /proc rw - proc proc rw
";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].mount_point, "/mnt/parent dir");
        assert_eq!(m[0].root, "/mnt1");
        assert_eq!(
            (m[0].fs_type.as_str(), m[0].source.as_str()),
            ("ext3", "/dev/root")
        );
        assert_eq!(m[1].device, "254:0");
        assert_eq!(m[2].fs_type, "proc");
    }

    #[test]
    fn escapes() {
        assert_eq!(unescape("a\\040b\\134c\\011"), "a b\\c\t");
        assert_eq!(unescape("a\\9b\\"), "a\\9b\\");
        assert_eq!(unescape("\\777"), "\\777");
    }

    #[test]
    fn diskstats_and_net_dev() {
        let d = parse_diskstats(
            " 254       0 vda 45015 6806 3012250 14721 30261 28772 5218992 46997 0 11108 63033\n 7 0 loop0 0 0\n",
        );
        assert_eq!(
            d,
            [DiskCounters {
                name: "vda".into(),
                read_bytes: 3_012_250 * 512,
                written_bytes: 5_218_992 * 512
            }]
        );
        let n = parse_net_dev(
            "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:   42558     514    0    0    0     0          0         0    42558     514    0    0    0     0       0          0
  eth0: 317007385    6961    3    0    0     0          0         0   318718    3549    4    0    0     0       0          0
",
        );
        assert_eq!(n.len(), 2);
        assert_eq!(
            n[1],
            NetCounters {
                name: "eth0".into(),
                rx_bytes: 317_007_385,
                tx_bytes: 318_718,
                errors: 7
            }
        );
    }
}
