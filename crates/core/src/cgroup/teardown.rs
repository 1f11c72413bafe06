//! Ending everything in a cgroup and removing it, verified rather than assumed.

use super::{Cgroup, files};
use crate::{Error, Result, procs};
use nix::{
    errno::Errno,
    poll::{PollFd, PollFlags, PollTimeout, poll},
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use std::{
    fs::File,
    io,
    os::{
        fd::{AsFd, OwnedFd},
        unix::fs::FileExt,
    },
    path::Path,
    thread,
    time::{Duration, Instant},
};

impl Cgroup {
    /// Sends `signal` to every process in the cgroup; returns how many received it.
    /// A process that exits meanwhile is not an error, and neither is the cgroup itself
    /// going: its supervisor removes it the moment its last process ends, which may be
    /// just before a `kill` gets to it. A missing cgroup has nothing to signal.
    pub fn signal_all(&self, signal: Signal) -> Result<usize> {
        let pids = match self.procs() {
            Ok(pids) => pids,
            Err(e) if e.cgroup_gone() => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut sent = 0;
        for pid in pids {
            match kill(Pid::from_raw(pid), signal) {
                Ok(()) => sent += 1,
                Err(Errno::ESRCH) => {}
                Err(e) => {
                    return Err(Error::io("signal a process of", &self.unified, io::Error::from(e)));
                }
            }
        }
        Ok(sent)
    }

    /// SIGKILLs every process in the cgroup and its descendants at once. Uses `cgroup.kill`
    /// (Linux 5.14+), which the kernel applies atomically, so a forking process cannot slip
    /// out; on older kernels it freezes the cgroup first, so nothing forks while each pid is
    /// killed, then thaws it so the kills are delivered. A missing cgroup has nothing to kill.
    pub fn kill(&self) -> Result<()> {
        if !self.exists() {
            return Ok(());
        }
        let kill_file = self.unified.join("cgroup.kill");
        if kill_file.exists() {
            return match files::write(&kill_file, "1", "cgroup") {
                // Removed since the check above (a missing file reads as a missing controller).
                Err(e) if e.cgroup_gone() || !self.exists() => Ok(()),
                other => other,
            };
        }
        let freeze = self.unified.join("cgroup.freeze");
        files::write(&freeze, "1", "freezer")?;
        let result = self.signal_all(Signal::SIGKILL);
        files::write(&freeze, "0", "freezer")?;
        result.map(|_| ())
    }

    /// Waits, woken by the kernel's notifications on `cgroup.events`, until no process is
    /// left in the cgroup. Returns whether it emptied within `timeout`.
    ///
    /// The kernel sends at most one notification per file in each rate-limit window
    /// (`CGROUP_FILE_NOTIFY_MIN_INTV`, 10 ms rounded up to whole jiffies). A change inside
    /// the window is meant to be delivered late by a timer, but some kernels drop it (a
    /// lockless early return that skipped the timer shipped in vendor trees before 7.1): a
    /// kill right after a spawn then emptied the cgroup without a wake-up, and waited out
    /// the old 200 ms cap. A dropped or late change always falls within one window after a
    /// notification that was delivered, and every delivered one wakes us (or came before we
    /// started), so the file is read again one window (30 ms) after the start and after
    /// every wake-up: nothing is missed, and a quiet cgroup still costs no polling.
    ///
    /// The common case is quicker still: each process in the cgroup (up to 64) is
    /// also waited for through a pidfd. The kernel takes an exiting process out of its
    /// cgroup before it signals the pidfd, so the file read after that wake-up is current.
    pub fn wait_empty(&self, timeout: Duration) -> Result<bool> {
        let path = self.unified.join("cgroup.events");
        let file = match File::open(&path) {
            Ok(f) => f,
            // Gone, or being removed right now: nothing can be in it.
            Err(e) if crate::error::cgroup_gone(&e) => return Ok(true),
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        let deadline = Instant::now() + timeout;
        // When the kernel last told us something, or we started listening.
        let mut woken = Instant::now();
        let mut exits: Vec<OwnedFd> =
            self.procs().unwrap_or_default().into_iter().take(PIDFDS).filter_map(procs::pidfd_open).collect();
        loop {
            let mut buf = [0u8; 256];
            let n = match file.read_at(&mut buf, 0) {
                Ok(n) => n,
                // The cgroup was removed under us: nothing can be in it.
                Err(e) if crate::error::cgroup_gone(&e) => return Ok(true),
                Err(e) => return Err(Error::io("read", &path, e)),
            };
            let text = String::from_utf8_lossy(&buf[..n]);
            if files::keyed(&files::parse_keyed(&text), "populated") == Some(0) {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            // kernfs signals POLLPRI when the file changes; a pidfd is readable once its
            // process has exited, and stays so, so it is dropped once it has said that.
            let ms = next_wait(woken.elapsed(), left).as_millis() as u16;
            let mut fds = vec![PollFd::new(file.as_fd(), PollFlags::POLLPRI)];
            fds.extend(exits.iter().map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN)));
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(n) if n > 0 => {
                    let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
                    if ready(&fds[0]) {
                        woken = Instant::now();
                    }
                    let exited: Vec<bool> = fds[1..].iter().map(ready).collect();
                    drop(fds);
                    let mut exited = exited.into_iter();
                    exits.retain(|_| !exited.next().unwrap_or(false));
                }
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(Error::io("poll", &path, io::Error::from(e))),
            }
        }
    }

    /// Removes the cgroup (and any sub-cgroups an agent made) from every hierarchy. The kernel
    /// can answer EBUSY for a moment after the last process left, while it finishes tearing
    /// the tasks down, so that is retried for up to two seconds. Already gone is fine.
    pub fn remove(&self) -> Result<()> {
        for dir in self.dirs() {
            remove_tree(dir)?;
        }
        Ok(())
    }

    /// Kills everything, verifies the cgroup is empty, and removes it.
    pub fn kill_and_remove(&self, timeout: Duration) -> Result<()> {
        self.kill()?;
        if !self.wait_empty(timeout)? {
            let left = self.procs().map(|p| p.len()).unwrap_or(0);
            return Err(Error::Unsupported(format!(
                "{} still holds {left} process(es) {} after cgroup.kill; they may be stuck in the kernel (D state)",
                self.unified.display(),
                humantime::format_duration(timeout)
            )));
        }
        self.remove()
    }
}

/// How long `cgroup.kill` may take to empty a cgroup before it is called stuck (processes in
/// uninterruptible sleep, D state): every killer waits this long, the supervisor, `kill`,
/// relief and an undone `spawn`.
pub const KILL_SETTLE: Duration = Duration::from_secs(5);

/// The longest a change of `cgroup.events` can follow a delivered notification and still be
/// dropped or delayed by the kernel's rate limit: 10 ms rounded up to whole jiffies, plus the
/// jiffy the last one was sent in (16 ms at HZ=250, 20 ms at HZ=100), with a margin.
const NOTIFY_WINDOW: Duration = Duration::from_millis(30);

/// How many of a cgroup's processes [`Cgroup::wait_empty`] watches through pidfds; past
/// that, the cgroup's own notifications alone tell when the rest are gone.
const PIDFDS: usize = 64;

/// The longest wait in any case: a guard against a notification lost some other way.
const WAIT_CAP: Duration = Duration::from_millis(200);

/// How long [`Cgroup::wait_empty`] may sleep before reading `cgroup.events` again, `since`
/// its start or its last wake-up, with `left` until its deadline: to the end of the window
/// in which the kernel may have dropped a change, and after a quiet window, until the next
/// notification (up to the cap).
fn next_wait(since: Duration, left: Duration) -> Duration {
    let wait = if since < NOTIFY_WINDOW { NOTIFY_WINDOW - since } else { WAIT_CAP };
    wait.min(left).max(Duration::from_millis(1))
}

/// Removes `dir` and its sub-directories, deepest first (cgroup directories cannot be
/// removed recursively in one call, and their interface files cannot be unlinked).
fn remove_tree(dir: &Path) -> Result<()> {
    // rmdir first: an agent's cgroup rarely has cgroups of its own, and listing a cgroup
    // directory (34 files in v1's memory hierarchy) costs more than the rmdir itself.
    let mut pause = Duration::from_millis(5);
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut listed = false;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            // The kernel refuses a cgroup with cgroups below it with EBUSY (a plain
            // directory says ENOTEMPTY), as it does one whose last process is still leaving:
            // the cgroups below go first, once, and then EBUSY is waited out.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBUSY | libc::ENOTEMPTY)) && !listed => {
                listed = true;
                remove_children(dir)?;
            }
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(Error::io("remove cgroup", dir, e)),
        }
    }
}

/// Removes the cgroups below `dir`.
fn remove_children(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("list", dir, e)),
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroup::Layout;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_cgroup_that_is_gone_has_nothing_to_signal() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let gone = Cgroup { layout: Layout::Unified, unified: tmp.path().join("gone"), memory_v1: None, pids_v1: None };
        assert_eq!(gone.signal_all(Signal::SIGTERM).expect("no error"), 0);
    }

    #[test]
    fn a_tree_goes_children_first_and_one_already_gone_is_done() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("agent");
        std::fs::create_dir_all(root.join("a/b")).expect("mkdir");
        std::fs::create_dir_all(root.join("c")).expect("mkdir");
        let cgroup = Cgroup { layout: Layout::Unified, unified: root.clone(), memory_v1: None, pids_v1: None };
        cgroup.remove().expect("removed");
        assert!(!root.exists());
        cgroup.remove().expect("already gone is done");
    }

    #[test]
    fn reads_again_at_the_end_of_the_window_then_waits_for_the_kernel() {
        // Just started or just woken: sleep no further than the end of the window in which a
        // change may have gone unannounced.
        assert_eq!(next_wait(Duration::ZERO, 5 * WAIT_CAP), NOTIFY_WINDOW);
        assert_eq!(next_wait(10 * MS, 5 * WAIT_CAP), NOTIFY_WINDOW - 10 * MS);
        // A quiet window later, any change is announced: wait for it, up to the cap.
        assert_eq!(next_wait(NOTIFY_WINDOW, 5 * WAIT_CAP), WAIT_CAP);
        // Never past the deadline, and never a busy loop.
        assert_eq!(next_wait(Duration::ZERO, 7 * MS), 7 * MS);
        assert_eq!(next_wait(NOTIFY_WINDOW, Duration::ZERO), MS);
    }
}
