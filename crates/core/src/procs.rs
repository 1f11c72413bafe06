//! Processes as fleetctl identifies them: a pid plus its start time, so a recycled pid is
//! never mistaken for the process we recorded.

use crate::{Error, Result};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde::{Deserialize, Serialize};
use std::{
    os::fd::{AsFd, FromRawFd, OwnedFd, RawFd},
    path::Path,
    time::{Duration, Instant},
};

/// A process, identified beyond its pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProcessRef {
    /// The process id.
    pub pid: i32,
    /// Its start time in clock ticks after boot (`/proc/<pid>/stat` field 22).
    pub start_ticks: u64,
}

impl ProcessRef {
    /// Identifies the live process `pid`, if there is one.
    pub fn of(proc_root: &Path, pid: i32) -> Option<ProcessRef> {
        let stat = stat(proc_root, pid)?;
        Some(ProcessRef { pid, start_ticks: stat.start_ticks })
    }

    /// Whether this very process is still running (not exited, not a zombie, pid not reused).
    pub fn is_alive(&self, proc_root: &Path) -> bool {
        stat(proc_root, self.pid).is_some_and(|stat| stat.start_ticks == self.start_ticks && !stat.ended())
    }

    /// Waits up to `timeout` for this process to exit; returns whether it has. The kernel
    /// wakes the wait through a pidfd (Linux 5.3+) the moment the process exits, where a loop
    /// of short sleeps would oversleep by half a sleep on average; before Linux 5.3 it looks
    /// every 10 ms. Opening the pidfd first and checking the start time after means a pid
    /// that was recycled in between is never waited for.
    pub fn wait_exit(&self, proc_root: &Path, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let Some(pidfd) = pidfd_open(self.pid) else {
            while self.is_alive(proc_root) {
                if Instant::now() >= deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            return true;
        };
        loop {
            if !self.is_alive(proc_root) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX).max(1);
            let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            // Readable once the process has exited; the start-time check above decides.
            let _ = poll(&mut fds, PollTimeout::from(ms));
        }
    }
}

/// A pidfd for `pid`, or `None` when there is no such process or the kernel has no pidfds.
pub(crate) fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new descriptor, or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just made this descriptor, and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// What fleetctl needs of `/proc/<pid>/stat`: the state letter (field 3) and the start time
/// (field 22).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    state: u8,
    start_ticks: u64,
}

impl Stat {
    /// Exited: a zombie (`Z`) or dead (`X`, and `x` before Linux 3.13).
    fn ended(&self) -> bool {
        matches!(self.state, b'Z' | b'X' | b'x')
    }

    /// Parses a stat line. The command name (field 2) may hold spaces and parentheses:
    /// fields are counted from its closing parenthesis, the last one in the line.
    fn parse(line: &[u8]) -> Option<Stat> {
        let close = line.iter().rposition(|&b| b == b')')?;
        let mut fields = line[close + 1..].split(|&b| b == b' ').filter(|f| !f.is_empty());
        let state = *fields.next()?.first()?;
        // Field 22 is the 20th after the state (field 3).
        let start = fields.nth(18)?;
        let start_ticks = std::str::from_utf8(start).ok()?.trim_end().parse().ok()?;
        Some(Stat { state, start_ticks })
    }
}

/// `<proc_root>/<pid>/stat`, read in one `read(2)`: the kernel renders the whole line for
/// the first read when the buffer holds it (a line is at most about 1 KiB: 52 numeric
/// fields and a 16-byte name), so opening, one read and closing is all it costs. Every
/// `status`, `memory` and relief asks this of each agent's supervisor; the `procfs`
/// crate's reader (open, `fcntl`, `fstat`, `lseek`, two reads) and its parsing of all 52
/// fields cost twice the system calls.
fn stat(proc_root: &Path, pid: i32) -> Option<Stat> {
    let mut buf = [0u8; 2048];
    let line = crate::cgroup::files::read_once(&proc_root.join(pid.to_string()).join("stat"), &mut buf).ok()?;
    Stat::parse(line)
}

/// How many threads the calling process has (`<proc_root>/self/task` has an entry for each),
/// or `None` when procfs cannot say. For code that must fork while single-threaded.
pub fn thread_count(proc_root: &Path) -> Option<usize> {
    std::fs::read_dir(proc_root.join("self/task")).ok().map(|d| d.count())
}

/// The calling process as `<proc_root>/self/stat` shows it, read once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnStat {
    /// The process itself.
    pub me: ProcessRef,
    /// Where its command line and environment strings lie in its memory (`arg_start..arg_end`
    /// and `env_start..env_end`, fields 48-51), which `/proc/PID/cmdline` and
    /// `/proc/PID/environ` show: a forked process that must not keep its parent's arguments
    /// or variables overwrites them there. `None` when procfs cannot say (before Linux 3.5).
    pub arg_env: Option<[std::ops::Range<usize>; 2]>,
}

/// Reads [`OwnStat`]; `None` when procfs cannot say who the caller is.
pub fn own_stat(proc_root: &Path) -> Option<OwnStat> {
    // One read into the stack, as `stat` does: the caller is a process just forked, where
    // every heap page the read would grow into is first copied.
    let mut buf = [0u8; 2048];
    let line = crate::cgroup::files::read_once(&proc_root.join("self/stat"), &mut buf).ok()?;
    // The pid as the process knows it: procfs shows its own pid namespace's.
    let pid = std::process::id() as i32;
    let start_ticks = Stat::parse(line)?.start_ticks;
    // The name, cut to 15 bytes, may end in half a character: only what follows it is text.
    let after_name = line.iter().rposition(|&b| b == b')')?;
    let arg_env = std::str::from_utf8(&line[after_name..]).ok().and_then(arg_env_areas);
    Some(OwnStat { me: ProcessRef { pid, start_ticks }, arg_env })
}

fn arg_env_areas(stat: &str) -> Option<[std::ops::Range<usize>; 2]> {
    // The command name (field 2) may hold spaces and parentheses: count from its end.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let field = |n: usize| after_name.split_whitespace().nth(n - 3)?.parse::<usize>().ok();
    let (arg_start, arg_end, env_start, env_end) = (field(48)?, field(49)?, field(50)?, field(51)?);
    (arg_start < arg_end && env_start <= env_end).then_some([arg_start..arg_end, env_start..env_end])
}

/// Makes the calling process the OOM killer's last choice (`oom_score_adj` -1000). Only root
/// may lower it; others get a permission error the caller may ignore.
pub fn protect_from_oom(proc_root: &Path) -> Result<()> {
    let path = proc_root.join("self/oom_score_adj");
    std::fs::write(&path, "-1000").map_err(|e| Error::io("write", &path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_exit_returns_when_the_process_ends_and_not_before() {
        let proc_root = Path::new("/proc");
        let mut child = std::process::Command::new("sleep").arg("1000").spawn().unwrap();
        let me = ProcessRef::of(proc_root, child.id() as i32).unwrap();
        assert!(!me.wait_exit(proc_root, Duration::from_millis(20)), "a sleeping process has not exited");
        child.kill().unwrap();
        // Still our unreaped child (a zombie): exited all the same.
        assert!(me.wait_exit(proc_root, Duration::from_secs(10)));
        child.wait().unwrap();
        assert!(me.wait_exit(proc_root, Duration::ZERO), "a reaped process has exited");
    }

    #[test]
    fn a_stat_line_gives_the_state_and_start_time_counted_from_the_name_s_end() {
        // Field 22 is the start time; a name may hold spaces and parentheses.
        let tail: String = (4..=52).map(|n| if n == 22 { " 987654".to_string() } else { format!(" {n}") }).collect();
        let line = format!("42 (sup:a (1) x) S{tail}\n");
        assert_eq!(Stat::parse(line.as_bytes()), Some(Stat { state: b'S', start_ticks: 987654 }));
        let zombie = format!("42 (sup) Z{tail}");
        assert!(Stat::parse(zombie.as_bytes()).is_some_and(|s| s.ended()));
        assert!(!Stat::parse(line.as_bytes()).is_some_and(|s| s.ended()));
        assert_eq!(Stat::parse(b"42 (short) S 1 2 3"), None, "too few fields");
        assert_eq!(Stat::parse(b"no name here"), None);
    }

    #[test]
    fn the_live_process_s_own_stat_names_it() {
        let me = ProcessRef::of(Path::new("/proc"), std::process::id() as i32).expect("our own stat");
        assert!(me.is_alive(Path::new("/proc")));
        let other = ProcessRef { start_ticks: me.start_ticks + 1, ..me };
        assert!(!other.is_alive(Path::new("/proc")), "another start time is another process");
    }

    #[test]
    fn threads_are_counted_from_the_task_directory() {
        let tmp = tempfile::tempdir().unwrap();
        for tid in ["41", "42"] {
            std::fs::create_dir_all(tmp.path().join("self/task").join(tid)).unwrap();
        }
        assert_eq!(thread_count(tmp.path()), Some(2));
        assert_eq!(thread_count(&tmp.path().join("missing")), None);
    }

    #[test]
    fn the_argument_and_environment_areas_come_from_the_end_of_stat() {
        let tail: String = (3..=52).map(|n| format!(" {n}")).collect();
        let stat = format!("42 (a) b (c){tail}");
        assert_eq!(arg_env_areas(&stat), Some([48..49, 50..51]));
        assert_eq!(arg_env_areas("42 (short) S 1 2"), None, "an old kernel's shorter line");
        // A name cut in the middle of a character is not text; what follows it still is.
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("self")).unwrap();
        let mut line = b"42 (sup:\xc3)".to_vec();
        line.extend(tail.as_bytes());
        std::fs::write(tmp.path().join("self/stat"), line).unwrap();
        let own = own_stat(tmp.path()).expect("own stat");
        assert_eq!(own.arg_env, Some([48..49, 50..51]));
        assert_eq!(own.me, ProcessRef { pid: std::process::id() as i32, start_ticks: 22 });
    }
}
