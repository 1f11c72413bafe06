//! Being woken by the kernel when an agent stalls on memory, instead of polling for it: a
//! PSI trigger on the agent's cgroup2 `memory.pressure`. The file is in the unified tree on
//! both layouts (PSI needs no controller), so hybrid hosts have it too.
//!
//! Writing `full <stall µs> <window µs>` to the file arms the trigger; the kernel then wakes
//! pollers of the descriptor with POLLPRI when all the cgroup's tasks were stalled on memory
//! for longer than that within one window, at most once per window, and poll(2) itself
//! consumes the event. Linux 6.5 and later decide how to watch by the credentials the file
//! was opened with (`f_cred` in `psi_trigger_create`): with `CAP_SYS_RESOURCE` effective
//! the kernel starts a `psimon` kernel thread at real-time priority (SCHED_FIFO) for the
//! cgroup, one per agent; without it, it takes only windows that are whole multiples of 2 s
//! and serves them from its 2 s averaging work. Supervisors run as root, so the file is
//! opened with `CAP_SYS_RESOURCE` lowered out of the thread's effective set
//! ([`without_sys_resource`]), and [`stall_window`] gives windows the unprivileged path
//! takes. Before 6.5 the kernel makes no such distinction: every trigger starts its
//! cgroup's `psimon` thread, so each agent with a stall watch has one whatever we do.

use super::Cgroup;
use crate::{Error, Result};
use std::{
    fs::File,
    io::{self, Write},
    os::fd::{AsFd, BorrowedFd},
    time::Duration,
};

/// The window step every opener may use (unprivileged triggers take only multiples of it).
pub const STALL_WINDOW_STEP: Duration = Duration::from_secs(2);

/// The longest window the kernel takes.
pub const STALL_WINDOW_MAX: Duration = Duration::from_secs(10);

/// The trigger window for a stall that must last `after`: the longest whole multiple of 2 s
/// up to `after`, within the kernel's 2..10 s. Several windows in a row then make the stall.
pub fn stall_window(after: Duration) -> Duration {
    let steps = (after.as_secs() / STALL_WINDOW_STEP.as_secs()).clamp(1, STALL_WINDOW_MAX.as_secs() / 2);
    STALL_WINDOW_STEP * steps as u32
}

/// The trigger line for `threshold_percent` of `window`: `full <stall µs> <window µs>`.
pub fn trigger_line(threshold_percent: u8, window: Duration) -> String {
    let window_us = window.as_micros() as u64;
    // The kernel wants a stall time above 0 and below the window.
    let stall_us = (window_us * u64::from(threshold_percent) / 100).clamp(1, window_us - 1);
    format!("full {stall_us} {window_us}")
}

/// An armed trigger on one cgroup's memory pressure; dropping it disarms it.
pub struct StallTrigger {
    file: File,
}

impl StallTrigger {
    /// Arms a trigger on `cgroup` for `full` memory pressure above `threshold_percent` of
    /// `window` (see [`stall_window`]).
    pub fn arm(cgroup: &Cgroup, threshold_percent: u8, window: Duration) -> Result<StallTrigger> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = cgroup.unified.join("memory.pressure");
        let open = || std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK).open(&path);
        let mut file = without_sys_resource(open).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::Unsupported(format!(
                "{} is missing: the kernel has no pressure stall information (boot with psi=1)",
                path.display()
            )),
            _ => Error::io("open", &path, e),
        })?;
        // One write(2) with the terminating NUL, as the kernel's documentation does.
        let mut line = trigger_line(threshold_percent, window).into_bytes();
        line.push(0);
        file.write_all(&line).map_err(|e| Error::io("arm a pressure trigger on", &path, e))?;
        Ok(StallTrigger { file })
    }

    /// The descriptor to poll for POLLPRI.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Runs `f` with `CAP_SYS_RESOURCE` out of the calling thread's effective set (capabilities
/// are per thread), and puts it back after: it stays permitted, so the supervisor keeps it
/// for what needs it (its own `oom_score_adj`). A thread without it, or one that cannot
/// lower it, runs `f` as it is: the trigger then works all the same.
fn without_sys_resource<T>(f: impl FnOnce() -> T) -> T {
    use caps::{CapSet, Capability::CAP_SYS_RESOURCE};
    if !caps::has_cap(None, CapSet::Effective, CAP_SYS_RESOURCE).unwrap_or(false)
        || caps::drop(None, CapSet::Effective, CAP_SYS_RESOURCE).is_err()
    {
        return f();
    }
    let out = f();
    // Raising an effective bit that is still permitted cannot fail.
    let _ = caps::raise(None, CapSet::Effective, CAP_SYS_RESOURCE);
    out
}

/// Whether the calling thread has `CAP_SYS_RESOURCE` in its effective set.
#[cfg(test)]
fn sys_resource_effective() -> bool {
    caps::has_cap(None, caps::CapSet::Effective, caps::Capability::CAP_SYS_RESOURCE).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_whole_steps_within_the_kernel_bounds() {
        let s = Duration::from_secs;
        assert_eq!(stall_window(Duration::from_millis(500)), s(2));
        assert_eq!(stall_window(s(3)), s(2));
        assert_eq!(stall_window(s(5)), s(4));
        assert_eq!(stall_window(s(30)), s(10));
    }

    #[test]
    fn the_capability_is_out_of_the_effective_set_only_while_the_file_opens() {
        if !sys_resource_effective() {
            // Lowering what is not there proves nothing (not root, or a root without it).
            // Straight to the terminal, as the integration tests' `skip` does: `eprintln!`
            // inside a passing test is captured and never shown.
            let _ = std::io::stderr().write_all(
                b"SKIPPED the_capability_is_out_of_the_effective_set_only_while_the_file_opens: \
                  this thread lacks CAP_SYS_RESOURCE\n",
            );
            return;
        }
        assert!(!without_sys_resource(sys_resource_effective), "lowered while f runs");
        assert!(sys_resource_effective(), "raised again after");
    }

    #[test]
    fn trigger_lines_take_the_threshold_of_the_window() {
        assert_eq!(trigger_line(50, Duration::from_secs(10)), "full 5000000 10000000");
        assert_eq!(trigger_line(10, Duration::from_secs(2)), "full 200000 2000000");
        // 100 % is not a stall time the kernel takes: just below the window.
        assert_eq!(trigger_line(100, Duration::from_secs(2)), "full 1999999 2000000");
    }
}
