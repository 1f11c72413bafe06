//! Processes as fleetctl identifies them: a pid plus its start time, so a recycled pid is
//! never mistaken for the process we recorded.

use crate::{Error, Result};
use procfs::process::{ProcState, Process};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A process, identified beyond its pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRef {
    /// The process id.
    pub pid: i32,
    /// Its start time in clock ticks after boot (`/proc/<pid>/stat` field 22).
    pub start_ticks: u64,
}

impl ProcessRef {
    /// Identifies the live process `pid`, if there is one.
    pub fn of(proc_root: &Path, pid: i32) -> Option<ProcessRef> {
        let stat = Process::new_with_root(proc_root.join(pid.to_string())).ok()?.stat().ok()?;
        Some(ProcessRef { pid, start_ticks: stat.starttime })
    }

    /// Whether this very process is still running (not exited, not a zombie, pid not reused).
    pub fn is_alive(&self, proc_root: &Path) -> bool {
        let Ok(proc) = Process::new_with_root(proc_root.join(self.pid.to_string())) else {
            return false;
        };
        let Ok(stat) = proc.stat() else { return false };
        stat.starttime == self.start_ticks && !matches!(stat.state(), Ok(ProcState::Zombie | ProcState::Dead))
    }
}

/// The file a process writes to change its own OOM score, as a C string for use between fork
/// and exec (where only async-signal-safe calls such as open(2) and write(2) are allowed).
pub const SELF_OOM_SCORE_ADJ: &std::ffi::CStr = c"/proc/self/oom_score_adj";

/// Makes the calling process the OOM killer's last choice (`oom_score_adj` -1000). Only root
/// may lower it; others get a permission error the caller may ignore.
pub fn protect_from_oom(proc_root: &Path) -> Result<()> {
    let path = proc_root.join("self/oom_score_adj");
    std::fs::write(&path, "-1000").map_err(|e| Error::io("write", &path, e))
}
