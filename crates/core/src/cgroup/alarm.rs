//! Being woken by the kernel when the fleet's memory use crosses a threshold, instead of
//! polling for it.
//!
//! - cgroup v1 (hybrid hosts): the memory controller signals an eventfd when
//!   `memory.usage_in_bytes` crosses a threshold registered through `cgroup.event_control`.
//! - cgroup v2: setting the fleet root's `memory.high` at the threshold makes the kernel count
//!   a `high` event in `memory.events` (which wakes pollers with POLLPRI) each time usage goes
//!   over it, and it throttles the fleet's allocations there, buying the watcher time to act.
//!   `memory.high` goes back to `max` when the alarm is dropped. The fleet root's
//!   `memory.high` is the guard's: a value found there is taken for one a guard killed before
//!   it could restore it (SIGKILL, a watchdog's abort), not for a choice to keep, so a new
//!   guard never restores a stale alarm.

use super::{Cgroup, Layout, files};
use crate::{Error, Result};
use nix::{
    poll::PollFlags,
    sys::eventfd::{EfdFlags, EventFd},
};
use std::{
    fs::File,
    io,
    os::{
        fd::{AsFd, AsRawFd, BorrowedFd},
        unix::fs::FileExt,
    },
    path::PathBuf,
};

/// A threshold alarm on one cgroup's memory use.
pub struct UsageAlarm {
    kind: Kind,
}

enum Kind {
    V1 { eventfd: EventFd, _usage: File },
    V2 { events: File, high_path: PathBuf },
}

impl UsageAlarm {
    /// Arms the alarm at `bytes` of `cgroup`'s memory use.
    pub fn arm(cgroup: &Cgroup, bytes: u64) -> Result<UsageAlarm> {
        let dir = cgroup.memory_dir();
        match cgroup.layout {
            Layout::Hybrid => {
                let usage_path = dir.join("memory.usage_in_bytes");
                let usage = File::open(&usage_path).map_err(|e| Error::io("open", &usage_path, e))?;
                let eventfd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
                    .map_err(|e| Error::io("create an eventfd for", &usage_path, io::Error::from(e)))?;
                let line = format!("{} {} {bytes}", eventfd.as_fd().as_raw_fd(), usage.as_raw_fd());
                files::write(&dir.join("cgroup.event_control"), &line, "memory")?;
                Ok(UsageAlarm { kind: Kind::V1 { eventfd, _usage: usage } })
            }
            Layout::Unified => {
                let high_path = dir.join("memory.high");
                files::write(&high_path, &bytes.to_string(), "memory")?;
                let events_path = dir.join("memory.events");
                let events = File::open(&events_path).map_err(|e| Error::io("open", &events_path, e))?;
                Ok(UsageAlarm { kind: Kind::V2 { events, high_path } })
            }
        }
    }

    /// The descriptor to poll, and for which events.
    pub fn poll_target(&self) -> (BorrowedFd<'_>, PollFlags) {
        match &self.kind {
            Kind::V1 { eventfd, .. } => (eventfd.as_fd(), PollFlags::POLLIN),
            Kind::V2 { events, .. } => (events.as_fd(), PollFlags::POLLPRI),
        }
    }

    /// Consumes the notification so the next poll waits for a new one.
    pub fn drain(&self) {
        match &self.kind {
            Kind::V1 { eventfd, .. } => {
                let _ = eventfd.read();
            }
            // kernfs re-arms POLLPRI once the file has been read.
            Kind::V2 { events, .. } => {
                let mut buf = [0u8; 512];
                let _ = events.read_at(&mut buf, 0);
            }
        }
    }
}

impl Drop for UsageAlarm {
    fn drop(&mut self) {
        if let Kind::V2 { high_path, .. } = &self.kind {
            let _ = files::write(high_path, "max", "memory");
        }
    }
}
