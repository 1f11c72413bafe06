//! Ending everything in a cgroup and removing it, verified rather than assumed.

use super::{Cgroup, files};
use crate::{Error, Result};
use nix::{
    errno::Errno,
    poll::{PollFd, PollFlags, PollTimeout, poll},
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use std::{
    fs::File,
    io,
    os::{fd::AsFd, unix::fs::FileExt},
    path::Path,
    thread,
    time::{Duration, Instant},
};

impl Cgroup {
    /// Sends `signal` to every process in the cgroup; returns how many received it.
    /// A process that exits meanwhile is not an error.
    pub fn signal_all(&self, signal: Signal) -> Result<usize> {
        let mut sent = 0;
        for pid in self.procs()? {
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
                Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::ENODEV) => Ok(()),
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
    pub fn wait_empty(&self, timeout: Duration) -> Result<bool> {
        let path = self.unified.join("cgroup.events");
        let file = match File::open(&path) {
            Ok(f) => f,
            // Gone, or being removed right now (ENODEV): nothing can be in it.
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV) => return Ok(true),
            Err(e) => return Err(Error::io("open", &path, e)),
        };
        let deadline = Instant::now() + timeout;
        loop {
            let mut buf = [0u8; 256];
            let n = match file.read_at(&mut buf, 0) {
                Ok(n) => n,
                // The cgroup was removed under us: nothing can be in it.
                Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return Ok(true),
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
            // kernfs signals POLLPRI when the file changes; the cap guards against a missed
            // wakeup on kernels that do not notify for every transition.
            let ms = left.min(Duration::from_millis(200)).as_millis() as u16;
            let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLPRI)];
            match poll(&mut fds, PollTimeout::from(ms)) {
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

/// Removes `dir` and its sub-directories, deepest first (cgroup directories cannot be
/// removed recursively in one call, and their interface files cannot be unlinked).
fn remove_tree(dir: &Path) -> Result<()> {
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
    let mut pause = Duration::from_millis(5);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(Error::io("remove cgroup", dir, e)),
        }
    }
}
