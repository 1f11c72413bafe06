//! Being told, not polling, when the OOM killer strikes an agent on a hybrid host.
//!
//! cgroup v2's `memory.oom.group` makes the kernel kill an agent's whole tree at once. cgroup
//! v1 has no such switch: the OOM killer picks one process and leaves the rest running. The
//! v1 memory controller does offer an OOM notification (an eventfd registered through
//! `cgroup.event_control` against `memory.oom_control`), so the supervisor waits on it and
//! kills the rest of the agent itself, which gives v1 agents the same whole-tree semantics.

use super::{Cgroup, Layout, files};
use crate::{Error, Result};
use nix::sys::eventfd::{EfdFlags, EventFd};
use std::{
    fs::File,
    io,
    os::fd::{AsFd, AsRawFd, BorrowedFd},
};

/// An OOM notification registered on one cgroup (v1 only; on v2 the kernel kills the group).
pub struct OomWatch {
    eventfd: EventFd,
    // The kernel holds its own reference, but keeping the control file open ties the
    // registration's lifetime visibly to this value.
    _oom_control: File,
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
        Ok(Some(OomWatch { eventfd, _oom_control: oom_control }))
    }

    /// The descriptor to poll for readability.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.eventfd.as_fd()
    }

    /// Consumes pending notifications; returns whether there were any.
    pub fn drain(&self) -> bool {
        self.eventfd.read().is_ok_and(|n| n > 0)
    }
}
