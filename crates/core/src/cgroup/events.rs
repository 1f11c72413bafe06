//! Being told, not polling, when the OOM killer strikes an agent on a hybrid host.
//!
//! cgroup v2's `memory.oom.group` makes the kernel kill an agent's whole tree at once. cgroup
//! v1 has no such switch: the OOM killer picks one process and leaves the rest running. The
//! v1 memory controller does offer an OOM notification (an eventfd registered through
//! `cgroup.event_control` against `memory.oom_control`), so the supervisor waits on it and
//! kills the rest of the agent itself, which gives v1 agents the same whole-tree semantics.
//!
//! The notification alone does not say whose OOM it was: the kernel sends it to every cgroup
//! below the one that ran out, so when the fleet's budget runs out every agent hears of it.
//! What does say is the agent's own `memory.oom_control`, read through the same open file
//! ([`OomWatch::control`]): v1 counts an OOM kill (`oom_kill`) only in the victim's own
//! cgroup, and marks the whole subtree `under_oom` from before it notifies until its victim
//! has been signalled. So once `under_oom` reads 0 again, `oom_kill` says whether this
//! cgroup lost a process (`mem_cgroup_oom` and `memcg1_oom_prepare`/`memcg1_oom_finish` in
//! the kernel's mm/memcontrol-v1.c).

use super::{Cgroup, Layout, files};
use crate::{Error, Result};
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::{
    fs::File,
    io,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd},
        unix::fs::FileExt,
    },
    path::PathBuf,
};

/// An OOM notification registered on one cgroup (v1 only; on v2 the kernel kills the group).
pub struct OomWatch {
    eventfd: EventFd,
    /// The cgroup's `memory.oom_control`, registered against and read by [`OomWatch::control`].
    oom_control: File,
    path: PathBuf,
}

/// What `memory.oom_control` says of one v1 cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OomControl {
    /// An OOM of this cgroup or of one above it is being handled: the victim is not signalled
    /// yet.
    pub under_oom: bool,
    /// Processes of this very cgroup the OOM killer has killed (v1 does not count them in the
    /// cgroups above).
    pub oom_kill: u64,
}

impl OomControl {
    /// Parses the file's `key value` lines; a kernel without `oom_kill` (before 4.13) reads 0.
    pub fn parse(text: &str) -> OomControl {
        let pairs = files::parse_keyed(text);
        OomControl {
            under_oom: files::keyed(&pairs, "under_oom").is_some_and(|n| n > 0),
            oom_kill: files::keyed(&pairs, "oom_kill").unwrap_or(0),
        }
    }
}

impl OomWatch {
    /// Registers for OOM events on `cgroup`. Returns `None` on v2, where
    /// `memory.oom.group` already makes the kernel kill the whole group.
    pub fn register(cgroup: &Cgroup) -> Result<Option<OomWatch>> {
        if cgroup.layout == Layout::Unified {
            return Ok(None);
        }
        let dir = cgroup.memory_dir();
        let control_path = dir.join("memory.oom_control");
        let oom_control = File::open(&control_path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => files::missing(&control_path, "memory"),
            _ => Error::io("open", &control_path, e),
        })?;
        let eventfd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(|e| Error::io("create an eventfd for", &control_path, io::Error::from(e)))?;
        let registration = format!("{} {}", eventfd.as_fd().as_raw_fd(), oom_control.as_raw_fd());
        files::write(&dir.join("cgroup.event_control"), &registration, "memory")?;
        Ok(Some(OomWatch { eventfd, oom_control, path: control_path }))
    }

    /// The descriptor to poll for readability.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.eventfd.as_fd()
    }

    /// Consumes pending notifications; returns whether there were any.
    pub fn drain(&self) -> bool {
        self.eventfd.read().is_ok_and(|n| n > 0)
    }

    /// The cgroup's `memory.oom_control` now (one `pread`: the kernel renders it afresh at
    /// offset 0).
    pub fn control(&self) -> Result<OomControl> {
        let mut buf = [0u8; 128];
        let n = self.oom_control.read_at(&mut buf, 0).map_err(|e| Error::io("read", &self.path, e))?;
        Ok(OomControl::parse(&String::from_utf8_lossy(&buf[..n])))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_control_reads_the_episode_and_the_own_kills() {
        let c = OomControl::parse("oom_kill_disable 0\nunder_oom 1\noom_kill 2\n");
        assert_eq!(c, OomControl { under_oom: true, oom_kill: 2 });
        // Kernels before 4.13 have no oom_kill line.
        assert_eq!(OomControl::parse("oom_kill_disable 0\nunder_oom 0\n"), OomControl::default());
    }
}
