//! Mounts: what is mounted where (`<proc>/self/mountinfo`), and the scratch tmpfs.

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// One line of mountinfo, the parts we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted.
    pub target: PathBuf,
    /// Its filesystem type (`tmpfs`, `cgroup2` ...).
    pub fstype: String,
    /// Its superblock options (`rw,size=1048576k` ...).
    pub options: String,
}

/// Every mount this process sees.
pub fn list(proc_root: &Path) -> Result<Vec<Mount>> {
    let p = proc_root.join("self/mountinfo");
    let text = std::fs::read_to_string(&p).map_err(|e| Error::io("read", &p, e))?;
    Ok(text.lines().filter_map(parse_line).collect())
}

/// The mount whose target is exactly `path`, the last one if stacked.
pub fn at(proc_root: &Path, path: &Path) -> Result<Option<Mount>> {
    Ok(list(proc_root)?.into_iter().rev().find(|m| m.target == path))
}

/// Whether a cgroup hierarchy (v1 or v2) is mounted with `favordynmods`. The kernel has one
/// lock for cgroup migrations across every hierarchy, so one such mount changes it for all:
/// a migration then waits for no RCU grace period. False when mountinfo cannot be read.
pub fn favours_dynmods(proc_root: &Path) -> bool {
    list(proc_root).is_ok_and(|all| {
        all.iter().any(|m| m.fstype.starts_with("cgroup") && m.options.split(',').any(|o| o == "favordynmods"))
    })
}

/// "36 35 98:0 /root /mnt rw,noatime master:1 - tmpfs tmpfs rw,size=64k": the mount
/// point (field 5) and, after the separator, the type and the superblock options.
pub(crate) fn parse_line(line: &str) -> Option<Mount> {
    let (head, tail) = line.split_once(" - ")?;
    let target = head.split(' ').nth(4)?;
    let mut tail = tail.split(' ');
    let fstype = tail.next()?.to_string();
    let options = tail.nth(1).unwrap_or("").to_string();
    Some(Mount { target: PathBuf::from(unescape(target)), fstype, options })
}

/// mountinfo escapes space, tab, newline and backslash as octal (`\040`).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 4).and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(c as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Mounts a tmpfs of at most `size` (a tmpfs `size=` value: bytes with a k/m/g suffix, or
/// a percentage of RAM) at `target`, which must exist.
pub fn mount_tmpfs(target: &Path, size: &str) -> Result<()> {
    use nix::mount::{MsFlags, mount};
    let data = format!("size={size},mode=0755");
    mount(Some("fleet-scratch"), target, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(data.as_str()))
        .map_err(|e| Error::io("mount tmpfs on", target, e.into()))
}

/// Unmounts `target`.
pub fn unmount(target: &Path) -> Result<()> {
    nix::mount::umount(target).map_err(|e| Error::io("unmount", target, e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_lines() {
        let m = parse_line(
            "36 35 0:52 / /var/lib/fleet/my\\040scratch rw,nosuid shared:5 - tmpfs fleet-scratch rw,size=65536k",
        )
        .expect("parse");
        assert_eq!(m.target, PathBuf::from("/var/lib/fleet/my scratch"));
        assert_eq!(m.fstype, "tmpfs");
        assert_eq!(m.options, "rw,size=65536k");
    }

    #[test]
    fn unescapes_mount_points() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape(r"/a\b"), r"/a\b");
    }

    #[test]
    fn finds_proc_in_this_process_mounts() {
        let m = at(Path::new("/proc"), Path::new("/proc")).expect("read").expect("proc is mounted");
        assert_eq!(m.fstype, "proc");
    }

    #[test]
    fn favordynmods_on_any_cgroup_hierarchy_counts_and_nowhere_else() {
        let unified = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";
        let memory_on = "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory,favordynmods";
        let other_on = "50 31 0:60 / /mnt rw - tmpfs favordynmods rw,favordynmods";
        for (lines, favoured) in [
            (vec![unified], false),
            (vec![unified, memory_on], true),
            (vec![unified, other_on], false),
            (vec![], false),
        ] {
            let root = tempfile::tempdir().unwrap();
            std::fs::create_dir(root.path().join("self")).unwrap();
            std::fs::write(root.path().join("self/mountinfo"), lines.join("\n")).unwrap();
            assert_eq!(favours_dynmods(root.path()), favoured, "{lines:?}");
        }
        assert!(!favours_dynmods(Path::new("/nonexistent")), "unreadable mountinfo says no");
    }
}
