//! Which cgroup layout the host has, where each hierarchy is mounted, and where the calling
//! process sits in each: read once from `/proc/self/mountinfo` (or, at the usual mount
//! points, told by statfs(2)) and `/proc/self/cgroup`.

use crate::{Error, Result, host::mounts};
use std::{
    fmt,
    path::{Path, PathBuf},
};

/// The host's cgroup layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Only cgroup2 is mounted, and it carries the memory and pids controllers.
    Unified,
    /// v1 memory and pids hierarchies carry the limits; cgroup2 is mounted without them and
    /// gives kill, events and freeze.
    Hybrid,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Unified => "cgroup v2 (unified)",
            Layout::Hybrid => "hybrid (v1 memory+pids, v2 for kill and events)",
        })
    }
}

/// Mount points of the hierarchies fleetctl uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mounts {
    /// The layout these mounts make.
    pub layout: Layout,
    /// The cgroup2 mount.
    pub unified: PathBuf,
    /// The v1 memory hierarchy (hybrid only).
    pub memory_v1: Option<PathBuf>,
    /// The v1 pids hierarchy (hybrid only).
    pub pids_v1: Option<PathBuf>,
}

impl Mounts {
    /// Whether swap is accounted per cgroup: always on cgroup v2; on a v1 memory hierarchy
    /// only where `memory.memsw.*` exists, without which an agent's swap 0 cannot be set.
    pub fn swap_accounted(&self) -> bool {
        match &self.memory_v1 {
            None => true,
            Some(mount) => mount.join("memory.memsw.limit_in_bytes").exists(),
        }
    }

    /// The layout at the usual mount points, told by statfs(2) alone: `root` (normally
    /// `/sys/fs/cgroup`) is cgroup2 carrying the memory and pids controllers, or a tmpfs
    /// holding cgroup2 at `unified` and the v1 `memory` and `pids` hierarchies, as systemd
    /// mounts them. None when anything differs; [`Mounts::detect`] then reads mountinfo.
    ///
    /// It exists for speed: a few statfs calls take microseconds, where the kernel renders
    /// mountinfo anew for every process that reads it, a visible part of `spawn`'s own work.
    pub fn probe(root: &Path) -> Option<Mounts> {
        use nix::sys::statfs::{CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC, TMPFS_MAGIC, statfs};
        let fs_type = |path: &Path| statfs(path).ok().map(|s| s.filesystem_type());
        let root_type = fs_type(root)?;
        if root_type == CGROUP2_SUPER_MAGIC {
            let controllers = super::files::read(&root.join("cgroup.controllers")).ok()?;
            let has = |name: &str| controllers.split_whitespace().any(|c| c == name);
            return (has("memory") && has("pids")).then(|| Mounts {
                layout: Layout::Unified,
                unified: root.to_path_buf(),
                memory_v1: None,
                pids_v1: None,
            });
        }
        if root_type != TMPFS_MAGIC {
            return None;
        }
        let (unified, memory, pids) = (root.join("unified"), root.join("memory"), root.join("pids"));
        // A v1 hierarchy is known by its mount point's name, as mountinfo's options would
        // say; the root of the pids hierarchy has no file of its own to check.
        let hybrid = fs_type(&unified)? == CGROUP2_SUPER_MAGIC
            && fs_type(&memory)? == CGROUP_SUPER_MAGIC
            && fs_type(&pids)? == CGROUP_SUPER_MAGIC;
        hybrid.then_some(Mounts { layout: Layout::Hybrid, unified, memory_v1: Some(memory), pids_v1: Some(pids) })
    }

    /// [`Mounts::probe`] at `cgroup_root`, or else [`Mounts::detect`] from `proc_root`.
    pub fn locate(cgroup_root: &Path, proc_root: &Path) -> Result<Mounts> {
        match Mounts::probe(cgroup_root) {
            Some(mounts) => Ok(mounts),
            None => Mounts::detect(proc_root),
        }
    }

    /// Detects the layout from `<proc_root>/self/mountinfo`.
    pub fn detect(proc_root: &Path) -> Result<Mounts> {
        // In 4 KiB reads: `fs::read_to_string` probes a file that reports size 0 with
        // 32-byte reads first, and each read makes the kernel render the mount table again.
        let text = super::files::read(&proc_root.join("self/mountinfo"))?;
        Mounts::from_mountinfo(&text)
    }

    /// Decides the layout from the text of a mountinfo file.
    pub fn from_mountinfo(text: &str) -> Result<Mounts> {
        let mut unified = None;
        let (mut memory_v1, mut pids_v1) = (None, None);
        for m in text.lines().filter_map(mounts::parse_line) {
            match m.fstype.as_str() {
                "cgroup2" if unified.is_none() => unified = Some(m.target),
                "cgroup" => {
                    let opts: Vec<&str> = m.options.split(',').collect();
                    if opts.contains(&"memory") && memory_v1.is_none() {
                        memory_v1 = Some(m.target.clone());
                    }
                    if opts.contains(&"pids") && pids_v1.is_none() {
                        pids_v1 = Some(m.target);
                    }
                }
                _ => {}
            }
        }
        let Some(unified) = unified else {
            return Err(Error::Unsupported(
                "no cgroup2 hierarchy is mounted; fleetctl needs cgroup v2 (or a hybrid layout with cgroup2 mounted)"
                    .into(),
            ));
        };
        match (memory_v1, pids_v1) {
            (Some(memory), Some(pids)) => {
                Ok(Mounts { layout: Layout::Hybrid, unified, memory_v1: Some(memory), pids_v1: Some(pids) })
            }
            (None, None) => Ok(Mounts { layout: Layout::Unified, unified, memory_v1: None, pids_v1: None }),
            _ => Err(Error::Unsupported(
                "only one of the v1 memory and pids controllers is mounted; mount both, or neither and use cgroup v2"
                    .into(),
            )),
        }
    }
}

/// Where the calling process sits in each hierarchy (paths relative to the mount points).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnCgroups {
    /// The path in the cgroup2 tree (the `0::` line).
    pub unified: String,
    /// The path in the v1 memory hierarchy.
    pub memory_v1: Option<String>,
    /// The path in the v1 pids hierarchy.
    pub pids_v1: Option<String>,
}

impl OwnCgroups {
    /// Reads `<proc_root>/self/cgroup`.
    pub fn read(proc_root: &Path) -> Result<OwnCgroups> {
        let text = super::files::read(&proc_root.join("self/cgroup"))?;
        Ok(OwnCgroups::parse(&text))
    }

    /// Parses the text of a `/proc/<pid>/cgroup` file.
    pub fn parse(text: &str) -> OwnCgroups {
        let mut own = OwnCgroups { unified: "/".into(), ..Default::default() };
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            if controllers.is_empty() {
                own.unified = path.to_string();
            }
            for c in controllers.split(',') {
                match c {
                    "memory" => own.memory_v1 = Some(path.to_string()),
                    "pids" => own.pids_v1 = Some(path.to_string()),
                    _ => {}
                }
            }
        }
        own
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
24 1 0:22 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
25 24 0:23 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
28 24 0:26 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
32 24 0:30 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
34 24 0:32 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const PURE: &str = "35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n";

    #[test]
    fn detects_hybrid() {
        let m = Mounts::from_mountinfo(HYBRID).expect("hybrid");
        assert_eq!(m.layout, Layout::Hybrid);
        assert_eq!(m.unified, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(m.memory_v1, Some(PathBuf::from("/sys/fs/cgroup/memory")));
        assert_eq!(m.pids_v1, Some(PathBuf::from("/sys/fs/cgroup/pids")));
    }

    #[test]
    fn detects_pure_v2_with_optional_fields() {
        let m = Mounts::from_mountinfo(PURE).expect("v2");
        assert_eq!(m.layout, Layout::Unified);
        assert_eq!(m.unified, PathBuf::from("/sys/fs/cgroup"));
    }

    #[test]
    fn probe_refuses_what_is_not_a_cgroup_mount() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for dir in ["unified", "memory", "pids"] {
            std::fs::create_dir(tmp.path().join(dir)).expect("mkdir");
        }
        assert_eq!(Mounts::probe(tmp.path()), None);
        assert_eq!(Mounts::probe(&tmp.path().join("missing")), None);
    }

    #[test]
    fn refuses_v1_only_and_half_hybrid() {
        let v1_only = "28 24 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert!(Mounts::from_mountinfo(v1_only).unwrap_err().to_string().contains("cgroup2"));
        let half = format!("{PURE}28 24 0:26 / /mem rw - cgroup cgroup rw,memory\n");
        assert!(Mounts::from_mountinfo(&half).unwrap_err().to_string().contains("pids"));
    }

    #[test]
    fn parses_own_cgroups() {
        let own = OwnCgroups::parse("9:name=systemd:/\n8:pids:/p\n4:memory:/process_api/x\n2:cpu,cpuacct:/\n0::/u\n");
        assert_eq!(own.unified, "/u");
        assert_eq!(own.memory_v1.as_deref(), Some("/process_api/x"));
        assert_eq!(own.pids_v1.as_deref(), Some("/p"));
    }
}
