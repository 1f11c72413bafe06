//! One API over the two cgroup layouts fleetctl runs on.
//!
//! On a **pure cgroup v2** host every controller lives in one tree. On a **hybrid** host the
//! v1 `memory` and `pids` controllers carry the limits while the cgroup2 tree (mounted with no
//! controllers) still gives `cgroup.kill`, `cgroup.events` and `cgroup.freeze`. An agent's
//! cgroup is therefore a [`Cgroup`]: the same relative path in every hierarchy that matters.

mod alarm;
mod events;
pub(crate) mod files;
mod fleet;
mod held;
mod layout;
mod limits;
mod placement;
mod pressure;
mod stats;
mod teardown;

pub use alarm::UsageAlarm;
pub use events::OomWatch;
pub use fleet::{Fleet, validate_parent};
pub use held::{HeldParent, Reader};
pub use layout::{Layout, Mounts, OwnCgroups};
pub use limits::Limits;
pub use placement::{Born, Entry, Placement, Refused, Step};
pub use pressure::{STALL_WINDOW_MAX, STALL_WINDOW_STEP, StallTrigger, stall_window, trigger_line};
pub use stats::{
    HeldCounter, MemoryDetail, MemoryEvents, MemoryStats, MemoryUse, Pressure, PressureTotals, parse_pressure,
    parse_pressure_totals,
};
pub use teardown::KILL_SETTLE;

use std::path::{Path, PathBuf};

/// Makes one cgroup directory in one hierarchy; its parent must exist. Returns whether this
/// call made it (false: it was there). For a whole [`Cgroup`], see [`Cgroup::create`].
pub fn make_dir(dir: &Path) -> crate::Result<bool> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(crate::Error::io("create cgroup", dir, e)),
    }
}

/// Removes one empty cgroup directory in one hierarchy, as it is: no kill, no retry, so a
/// cgroup that still has processes or children stays and this fails (`EBUSY`). Returns
/// whether this call removed it (false: it was gone). To end an agent's cgroup, see
/// [`Cgroup::kill_and_remove`].
pub fn remove_empty_dir(dir: &Path) -> crate::Result<bool> {
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(crate::Error::io("remove cgroup", dir, e)),
    }
}

/// One logical cgroup: its directory in the unified tree and, on hybrid hosts, in the v1
/// memory and pids hierarchies.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cgroup {
    /// Which layout the host has; decides where each interface file lives.
    pub layout: Layout,
    /// The directory in the cgroup2 tree (kill, events, freeze; and everything on pure v2).
    pub unified: PathBuf,
    /// The directory in the v1 memory hierarchy (hybrid only).
    pub memory_v1: Option<PathBuf>,
    /// The directory in the v1 pids hierarchy (hybrid only).
    pub pids_v1: Option<PathBuf>,
}

impl Cgroup {
    /// The child cgroup `name` in every hierarchy.
    pub fn child(&self, name: &str) -> Cgroup {
        Cgroup {
            layout: self.layout,
            unified: self.unified.join(name),
            memory_v1: self.memory_v1.as_ref().map(|p| p.join(name)),
            pids_v1: self.pids_v1.as_ref().map(|p| p.join(name)),
        }
    }

    /// Every directory of this cgroup, unified first.
    pub fn dirs(&self) -> Vec<&Path> {
        let mut dirs = vec![self.unified.as_path()];
        dirs.extend(self.memory_v1.as_deref());
        dirs.extend(self.pids_v1.as_deref());
        dirs
    }

    /// Where the memory interface files live.
    pub fn memory_dir(&self) -> &Path {
        self.memory_v1.as_deref().unwrap_or(&self.unified)
    }

    /// Where the pids interface files live.
    pub fn pids_dir(&self) -> &Path {
        self.pids_v1.as_deref().unwrap_or(&self.unified)
    }

    /// What a delegated user must own to manage this cgroup, by the kernel's delegation rules:
    /// each directory and the files that move processes and hand down controllers (never the
    /// cgroup's own limits, which stay its parent's to set).
    pub fn delegation_paths(&self) -> Vec<PathBuf> {
        let mut paths = Vec::new();
        for dir in self.dirs() {
            paths.push(dir.to_path_buf());
            let files: &[&str] = match dir == self.unified.as_path() {
                true => &["cgroup.procs", "cgroup.threads", "cgroup.subtree_control"],
                false => &["cgroup.procs", "tasks"],
            };
            paths.extend(files.iter().map(|f| dir.join(f)));
        }
        paths
    }

    /// The file holding this cgroup's hard memory limit in this layout, and its controller.
    pub fn memory_limit_file(&self) -> PathBuf {
        match &self.memory_v1 {
            Some(dir) => dir.join("memory.limit_in_bytes"),
            None => self.unified.join("memory.max"),
        }
    }

    /// The `cgroup.procs` file of every hierarchy: writing a pid (or `0`, "myself") into all
    /// of them places a process in this cgroup.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs().into_iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Whether the cgroup exists. `create` makes the unified directory last and `remove`
    /// removes it first, so it existing means the cgroup is complete in every hierarchy.
    pub fn exists(&self) -> bool {
        self.unified.is_dir()
    }

    /// When the cgroup was made, as far as its directory says: an agent's cgroup is a leaf,
    /// so nothing changes its directory after that. For agents whose record cannot say.
    pub fn created_at(&self) -> Option<std::time::SystemTime> {
        std::fs::metadata(&self.unified).and_then(|m| m.modified()).ok()
    }

    /// Creates the directory in every hierarchy, the unified one last (see [`Cgroup::exists`]);
    /// an existing one is fine. Returns how many of the [`Cgroup::dirs`] this call made: all
    /// of them means the cgroup is fresh, none that it was already there.
    pub fn create(&self) -> crate::Result<usize> {
        let mut made = 0;
        for dir in self.dirs().into_iter().rev() {
            made += usize::from(make_dir(dir)?);
        }
        Ok(made)
    }

    /// The process ids in this cgroup (the unified tree lists them on both layouts).
    pub fn procs(&self) -> crate::Result<Vec<i32>> {
        let path = self.unified.join("cgroup.procs");
        let text = files::read(&path)?;
        Ok(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// Moves process `pid` (0 for the caller) into this cgroup in every hierarchy.
    pub fn attach(&self, pid: i32) -> crate::Result<()> {
        for file in self.procs_files() {
            files::write(&file, &pid.to_string(), "cgroup")?;
        }
        Ok(())
    }

    /// Marks the cgroup2 directory for systemd-oomd to leave alone (`user.oomd_omit`, which
    /// oomd reads on each cgroup it would kill, when root owns it): the fleet's memory is its
    /// guard's to decide. Nothing on hybrid hosts, where oomd cannot run; a kernel without
    /// user xattrs on cgroupfs (before 5.7) says `Unsupported`, which callers may ignore.
    pub fn omit_from_oomd(&self) -> crate::Result<()> {
        if self.layout != Layout::Unified {
            return Ok(());
        }
        let path = std::ffi::CString::new(self.unified.as_os_str().as_encoded_bytes())
            .map_err(|_| crate::Error::Unsupported(format!("{}: a NUL byte in the path", self.unified.display())))?;
        // SAFETY: setxattr(2) with NUL-terminated strings and a one-byte value that outlive the call.
        let r = unsafe { libc::setxattr(path.as_ptr(), c"user.oomd_omit".as_ptr(), b"1".as_ptr().cast(), 1, 0) };
        match r {
            0 => Ok(()),
            _ => Err(crate::Error::io("mark for systemd-oomd", &self.unified, std::io::Error::last_os_error())),
        }
    }

    /// Moves process `pid` (0 for the caller) into this cgroup in the cgroup2 tree alone.
    pub fn attach_unified(&self, pid: i32) -> crate::Result<()> {
        files::write(&self.unified.join("cgroup.procs"), &pid.to_string(), "cgroup")
    }

    /// Moves process `pid` (0 for the caller) into this cgroup in the v1 hierarchies alone
    /// (none on pure cgroup v2), for a process already in it in the cgroup2 tree.
    pub fn attach_v1(&self, pid: i32) -> crate::Result<()> {
        for dir in [&self.memory_v1, &self.pids_v1].into_iter().flatten() {
            files::write(&dir.join("cgroup.procs"), &pid.to_string(), "cgroup")?;
        }
        Ok(())
    }
}
