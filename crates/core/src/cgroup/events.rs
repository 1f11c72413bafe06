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
//! What does say is the agent's own OOM kill counter (`oom_kill` in `memory.oom_control`,
//! read through the same open file by [`OomWatch::kills`]): v1 counts a kill only in the
//! victim's own cgroup. The kernel notifies before it chooses a victim, and nothing in v1
//! marks the end of that choice (`under_oom` is set only while it notifies: see
//! `memcg1_oom_prepare` in mm/memcontrol-v1.c), so the counter is read for a while after a
//! notification.

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
    /// The cgroup's `memory.oom_control`, registered against and read by [`OomWatch::kills`].
    oom_control: File,
    path: PathBuf,
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

    /// The OOM killer's kills in this very cgroup (`oom_kill` in `memory.oom_control`; 0 on
    /// kernels before 4.13, which lack it). One `pread`: the kernel renders the file afresh
    /// at offset 0.
    pub fn kills(&self) -> Result<u64> {
        let mut buf = [0u8; 128];
        let n = self.oom_control.read_at(&mut buf, 0).map_err(|e| Error::io("read", &self.path, e))?;
        Ok(oom_kills(&String::from_utf8_lossy(&buf[..n])))
    }
}

/// `oom_kill` from the text of `memory.oom_control`.
fn oom_kills(text: &str) -> u64 {
    files::keyed(&files::parse_keyed(text), "oom_kill").unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kills_are_read_from_oom_control() {
        assert_eq!(oom_kills("oom_kill_disable 0\nunder_oom 1\noom_kill 2\n"), 2);
        // Kernels before 4.13 have no oom_kill line.
        assert_eq!(oom_kills("oom_kill_disable 0\nunder_oom 0\n"), 0);
    }
}
